//! The control socket: a unix stream socket, mode 0660 (owner root, group
//! the daemon's group, `kedge` under systemd), one request per connection.
//!
//! # Design
//! [`bind`] only binds and sets the mode; the caller sends `READY=1`
//! afterwards. [`serve`] accepts connections, reads one request line each,
//! hands it to the daemon's main loop as a [`Call`] and writes the reply
//! back, so the main loop alone decides what a request does.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::protocol::{Reply, Request, MAX_LINE};

/// The socket's mode: owner and group read and write, nobody else.
pub const SOCKET_MODE: u32 = 0o660;

/// A request from the CLI and where its reply goes.
pub struct Call {
    pub request: Request,
    pub reply: oneshot::Sender<Reply>,
}

/// Errors of setting up the socket.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Another process answers on the socket already.
    #[error("control socket {}: another kedge is listening on it", path.display())]
    InUse { path: PathBuf },
    /// Binding, or setting the mode, failed.
    #[error("control socket {}: {step}: {source}", path.display())]
    Setup {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Binds the socket at `path` with mode [`SOCKET_MODE`], replacing a stale
/// socket file left by a daemon that died.
pub fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    let setup = |step| {
        move |source| SocketError::Setup {
            path: path.to_path_buf(),
            step,
            source,
        }
    };
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(SocketError::InUse {
                path: path.to_path_buf(),
            });
        }
        std::fs::remove_file(path).map_err(setup("removing the stale socket"))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(setup("creating its directory"))?;
    }
    let listener = UnixListener::bind(path).map_err(setup("binding"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(setup("setting mode 0660"))?;
    Ok(listener)
}

/// Accepts connections until `shutdown`, forwarding each request to
/// `calls`; removes the socket file when done.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    calls: mpsc::Sender<Call>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(answer(stream, calls.clone()));
                }
                Err(err) => {
                    tracing::warn!("control socket {}: accepting: {err}", path.display());
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            _ = stopped(&mut shutdown) => break,
        }
    }
    let _ = std::fs::remove_file(&path);
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn answer(stream: UnixStream, calls: mpsc::Sender<Call>) {
    let (reader, mut writer) = stream.into_split();
    let mut line = String::new();
    let read = BufReader::new(reader)
        .take(MAX_LINE)
        .read_line(&mut line)
        .await;
    let reply = match read {
        Err(err) => Reply::Failed {
            message: format!("reading the request: {err}"),
        },
        Ok(_) => match serde_json::from_str::<Request>(&line) {
            Err(err) => Reply::Failed {
                message: format!("not a kedge request: {err}"),
            },
            Ok(request) => {
                tracing::debug!(?request, "control request");
                let (reply, answer) = oneshot::channel();
                if calls.send(Call { request, reply }).await.is_err() {
                    Reply::Failed {
                        message: "kedge is stopping".into(),
                    }
                } else {
                    answer.await.unwrap_or(Reply::Failed {
                        message: "kedge is stopping".into(),
                    })
                }
            }
        },
    };
    let mut text = serde_json::to_string(&reply).unwrap_or_else(|err| {
        format!(r#"{{"reply":"failed","message":"encoding the reply: {err}"}}"#)
    });
    text.push('\n');
    // The client may have given up; nothing to do then.
    let _ = writer.write_all(text.as_bytes()).await;
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_socket_is_0660_and_a_stale_one_is_replaced(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("run/kedge.sock");
        let first = bind(&path)?;
        assert!(matches!(bind(&path), Err(SocketError::InUse { .. })));
        drop(first);
        let _second = bind(&path)?;
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        assert_eq!(mode, SOCKET_MODE);
        Ok(())
    }

    #[tokio::test]
    async fn a_request_reaches_the_main_loop_and_its_reply_the_client(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("kedge.sock");
        let listener = bind(&path)?;
        let (calls, mut received) = mpsc::channel(1);
        let (_stop, shutdown) = watch::channel(false);
        tokio::spawn(serve(listener, path.clone(), calls, shutdown));
        tokio::spawn(async move {
            while let Some(call) = received.recv().await {
                let _ = call.reply.send(Reply::Done {
                    message: format!("{:?}", call.request),
                });
            }
        });
        let client_path = path.clone();
        let reply = tokio::task::spawn_blocking(move || {
            super::super::protocol::call(
                &client_path,
                &Request::Status,
                std::time::Duration::from_secs(5),
            )
        })
        .await??;
        assert_eq!(
            reply,
            Reply::Done {
                message: "Status".into()
            }
        );
        Ok(())
    }
}
