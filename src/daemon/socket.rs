//! The control socket: a unix stream socket, mode 0660 (owner root, group
//! the daemon's group, `kedge` under systemd), one request per connection.
//!
//! # Design
//! [`bind`] only binds and sets the mode; the caller sends `READY=1`
//! afterwards. [`serve`] accepts connections, reads one request line each,
//! hands it to the daemon's main loop as a [`Call`] and writes the reply
//! back, so the main loop alone decides what a request does.
//!
//! # Guarantees
//! No client can make the daemon hold much: a request is read up to
//! [`MAX_REQUEST`] bytes and for [`REQUEST_DEADLINE`] at most; at most
//! [`MAX_CONNECTIONS`] connections and [`MAX_EXPENSIVE`] builds or diffs
//! are served at once (others are told the daemon is busy); a client that
//! closes its connection before the reply cancels the work (the [`Call`]'s
//! reply sender sees it closed). Closing only its sending side after the
//! request (`echo … | socat`) is not going away.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Interest};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::protocol::{Call, Reply, Request, MAX_REQUEST, REQUEST_DEADLINE};

/// The socket's mode: owner and group read and write, nobody else.
pub const SOCKET_MODE: u32 = 0o660;

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

/// Connections served at once; more are told the daemon is busy.
pub const MAX_CONNECTIONS: usize = 64;
/// Builds and diffs (CPU, memory and API requests each) run at once; more
/// are told to try again.
pub const MAX_EXPENSIVE: usize = 4;
/// How often a waiting connection checks that its client is still there.
const HANGUP_POLL: Duration = Duration::from_millis(250);
/// How long a connection is drained after its reply, so that a client
/// still sending reads the reply rather than a reset.
const LINGER: Duration = Duration::from_secs(1);
/// How long a reply may take to be written to a client that does not read.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// The bounds every connection shares.
#[derive(Clone)]
struct Limits {
    connections: Arc<Semaphore>,
    expensive: Arc<Semaphore>,
}

/// Accepts connections until `shutdown`, forwarding each request to
/// `calls`; removes the socket file when done.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    calls: mpsc::Sender<Call>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limits = Limits {
        connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        expensive: Arc::new(Semaphore::new(MAX_EXPENSIVE)),
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => match limits.connections.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let (calls, limits) = (calls.clone(), limits.clone());
                        tokio::spawn(async move {
                            answer(stream, calls, &limits).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tokio::spawn(send(stream, busy(&format!("{MAX_CONNECTIONS} connections are open"))));
                    }
                },
                Err(err) => {
                    tracing::warn!("control socket {}: accepting: {err}", path.display());
                    tokio::time::sleep(Duration::from_millis(100)).await;
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

fn busy(what: &str) -> Reply {
    Reply::Failed {
        message: format!("kedge is busy ({what}); try again"),
    }
}

fn stopping() -> Reply {
    Reply::Failed {
        message: "kedge is stopping".into(),
    }
}

async fn answer(stream: UnixStream, calls: mpsc::Sender<Call>, limits: &Limits) {
    let (reader, writer) = stream.into_split();
    let mut reader = BufReader::new(reader.take(MAX_REQUEST));
    let reply = match read_request(&mut reader).await {
        Ok(request) => match forward(request, &calls, limits, &writer).await {
            Some(reply) => reply,
            None => return,
        },
        Err(reply) => reply,
    };
    reply_and_close(reader.into_inner().into_inner(), writer, reply).await;
}

/// Hands `request` to the main loop and waits for its reply; `None` when
/// the client hung up first (dropping the reply's receiver tells the work
/// to stop).
async fn forward(
    request: Request,
    calls: &mpsc::Sender<Call>,
    limits: &Limits,
    client: &OwnedWriteHalf,
) -> Option<Reply> {
    let expensive = matches!(request, Request::Build { .. } | Request::Diff { .. });
    let _permit = if expensive {
        match limits.expensive.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                return Some(busy(&format!(
                    "{MAX_EXPENSIVE} builds or diffs are running"
                )))
            }
        }
    } else {
        None
    };
    tracing::debug!(?request, "control request");
    let (reply, answer) = oneshot::channel();
    if calls.send(Call { request, reply }).await.is_err() {
        return Some(stopping());
    }
    tokio::select! {
        reply = answer => Some(reply.unwrap_or_else(|_| stopping())),
        () = client_gone(client.as_ref()) => None,
    }
}

/// The request line, or the reply saying why there is none.
async fn read_request(
    reader: &mut BufReader<tokio::io::Take<OwnedReadHalf>>,
) -> Result<Request, Reply> {
    let mut line = String::new();
    let read = tokio::time::timeout(REQUEST_DEADLINE, reader.read_line(&mut line)).await;
    let refused = |message: String| Reply::Failed { message };
    match read {
        Err(_) => Err(refused(format!(
            "no whole request within {}s",
            REQUEST_DEADLINE.as_secs()
        ))),
        Ok(Err(err)) => Err(refused(format!("reading the request: {err}"))),
        Ok(Ok(_)) if !line.ends_with('\n') && reader.get_ref().limit() == 0 => Err(refused(
            format!("a request is at most {} KiB", MAX_REQUEST / 1024),
        )),
        Ok(Ok(_)) => serde_json::from_str::<Request>(&line)
            .map_err(|err| refused(format!("not a kedge request: {err}"))),
    }
}

/// Resolves when the client has closed its connection: not merely its
/// sending side, which `echo … | socat` closes after the request.
async fn client_gone(stream: &UnixStream) {
    loop {
        match stream.ready(Interest::WRITABLE).await {
            Ok(ready) if !ready.is_write_closed() => tokio::time::sleep(HANGUP_POLL).await,
            _ => return,
        }
    }
}

async fn send(stream: UnixStream, reply: Reply) {
    let (reader, writer) = stream.into_split();
    reply_and_close(reader, writer, reply).await;
}

async fn reply_and_close(mut reader: OwnedReadHalf, mut writer: OwnedWriteHalf, reply: Reply) {
    let mut text = serde_json::to_string(&reply).unwrap_or_else(|err| {
        format!(r#"{{"reply":"failed","message":"encoding the reply: {err}"}}"#)
    });
    text.push('\n');
    // The client may have given up or never read; nothing to do then.
    let _ = tokio::time::timeout(WRITE_DEADLINE, async {
        let _ = writer.write_all(text.as_bytes()).await;
        let _ = writer.shutdown().await;
    })
    .await;
    // A refused client may still be sending: closing on unread bytes would
    // reset the connection and lose the reply it is about to read.
    let mut sink = tokio::io::sink();
    let drain = tokio::io::copy(&mut reader, &mut sink);
    let _ = tokio::time::timeout(LINGER, drain).await;
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
            crate::protocol::call(
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
    /// A served socket whose main loop keeps every call unanswered.
    async fn holding_server(
        dir: &Path,
    ) -> Result<(PathBuf, mpsc::Receiver<Call>, watch::Sender<bool>), SocketError> {
        let path = dir.join("kedge.sock");
        let listener = bind(&path)?;
        let (calls, received) = mpsc::channel(MAX_CONNECTIONS * 2);
        let (stop, shutdown) = watch::channel(false);
        tokio::spawn(serve(listener, path.clone(), calls, shutdown));
        Ok((path, received, stop))
    }

    async fn exchange(path: &Path, bytes: &[u8]) -> std::io::Result<String> {
        let mut stream = UnixStream::connect(path).await?;
        // The daemon may stop reading before all is sent.
        let _ = stream.write_all(bytes).await;
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply).await;
        Ok(reply)
    }

    #[tokio::test]
    async fn a_request_over_the_size_limit_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (path, _calls, _stop) = holding_server(dir.path()).await?;
        let reply = exchange(&path, &vec![b' '; 1 << 20]).await?;
        assert!(reply.contains("a request is at most 64 KiB"), "{reply}");
        Ok(())
    }

    #[tokio::test]
    async fn a_request_that_never_ends_is_cut_off() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (path, _calls, _stop) = holding_server(dir.path()).await?;
        let reply = exchange(&path, br#"{"request":"#).await?;
        assert!(reply.contains("no whole request within 5s"), "{reply}");
        Ok(())
    }

    #[tokio::test]
    async fn connections_and_diffs_over_their_caps_are_told_the_daemon_is_busy(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (path, mut calls, _stop) = holding_server(dir.path()).await?;
        let diff = b"{\"request\":\"diff\",\"name\":\"apps\"}\n";
        let mut held = Vec::new();
        for _ in 0..MAX_EXPENSIVE {
            let mut stream = UnixStream::connect(&path).await?;
            stream.write_all(diff).await?;
            held.push((stream, calls.recv().await.ok_or("a call")?));
        }
        let reply = exchange(&path, diff).await?;
        assert!(reply.contains("builds or diffs are running"), "{reply}");
        for _ in MAX_EXPENSIVE..MAX_CONNECTIONS {
            let mut stream = UnixStream::connect(&path).await?;
            stream.write_all(b"{\"request\":\"status\"}\n").await?;
            held.push((stream, calls.recv().await.ok_or("a call")?));
        }
        let reply = exchange(&path, b"{\"request\":\"status\"}\n").await?;
        assert!(reply.contains("64 connections are open"), "{reply}");
        Ok(())
    }

    #[tokio::test]
    async fn a_client_that_hangs_up_cancels_its_call() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (path, mut calls, _stop) = holding_server(dir.path()).await?;
        let mut stream = UnixStream::connect(&path).await?;
        stream
            .write_all(b"{\"request\":\"diff\",\"name\":\"apps\"}\n")
            .await?;
        let mut call = calls.recv().await.ok_or("a call")?;
        drop(stream);
        tokio::time::timeout(Duration::from_secs(10), call.reply.closed()).await?;
        Ok(())
    }
}
