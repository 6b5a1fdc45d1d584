//! A TCP forwarder that can be switched off and on: put between wagate and a server (the S3
//! test server, say), it is that server going down and coming back.
//!
//! Up, every connection is relayed to the target. Down, new connections are reset as soon as
//! they are accepted and the ones being relayed are reset at once (both sides), so a client
//! sees what a dead server gives it: no answer, a broken connection, never a late reply.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct TcpSwitch {
    pub addr: SocketAddr,
    up: watch::Sender<bool>,
}

impl TcpSwitch {
    /// Listens on 127.0.0.1:0 and forwards to `target`; starts `up`.
    pub async fn start(target: SocketAddr, up: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(up);
        tokio::spawn(accept(listener, target, rx));
        Self { addr, up: tx }
    }

    /// `http://` and the address: an endpoint URL for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// New connections are reset, and so are the open ones.
    pub fn down(&self) {
        self.up.send_replace(false);
    }

    pub fn up(&self) {
        self.up.send_replace(true);
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, up: watch::Receiver<bool>) {
    // Ends when the switch is dropped (no sender any more).
    while up.has_changed().is_ok() {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if !*up.borrow() {
            reset(client);
            continue;
        }
        tokio::spawn(relay(client, target, up.clone()));
    }
}

async fn relay(mut client: TcpStream, target: SocketAddr, mut up: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        reset(client);
        return;
    };
    let switched_down = async move {
        // Ok when switched down, Err when the switch is gone: the end either way.
        let _ = up.wait_for(|up| !*up).await.map(drop);
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {
            let _ = client.shutdown().await;
        }
        () = switched_down => {
            reset(client);
            reset(server);
        }
    }
}

/// Closes with RST instead of FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}
