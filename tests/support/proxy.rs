//! A loopback TCP proxy that a test can freeze: while frozen it accepts no
//! connection and moves no byte in either direction, so the kernel buffers
//! everything, exactly as for a server stopped with SIGSTOP; thawed, it
//! goes on where it stopped. Lets one test freeze "the API server" without
//! freezing the control plane every other test shares.

use std::net::{SocketAddr, TcpListener};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// A running proxy; stops when dropped.
pub struct FreezableProxy {
    pub port: u16,
    frozen: watch::Sender<bool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FreezableProxy {
    /// Forwards 127.0.0.1:`port` to `target`.
    pub fn start(target: SocketAddr) -> FreezableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("nonblocking proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (frozen, frozen_rx) = watch::channel(false);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("proxy runtime");
            runtime.block_on(async move {
                tokio::select! {
                    () = accept_loop(listener, target, frozen_rx) => {}
                    _ = stopped => {}
                }
            });
        });
        FreezableProxy {
            port,
            frozen,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn thawed(frozen: &mut watch::Receiver<bool>) {
    let _ = frozen.wait_for(|f| !*f).await;
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, mut frozen: watch::Receiver<bool>) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        thawed(&mut frozen).await;
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = frozen.wait_for(|f| *f) => continue,
        };
        let Ok((client, _)) = accepted else { continue };
        let frozen = frozen.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::join!(
                pump(client_read, server_write, frozen.clone()),
                pump(server_read, client_write, frozen),
            );
        });
    }
}

/// Copies `from` to `to` while thawed; reads nothing while frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        thawed(&mut frozen).await;
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            _ = frozen.wait_for(|f| *f) => continue,
        };
        match read {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => {
                thawed(&mut frozen).await;
                if to.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
