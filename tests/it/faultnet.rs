//! A network that can split: a fault-injecting TCP proxy on every path
//! between two processes of a scenario.
//!
//! Each [`Link`] listens on a loopback port of its own and forwards every
//! connection to one target address. A process is told to reach another
//! through the link between them (a node's bootnodes, the event system's
//! `--nodes`), so that every byte between them crosses it. Cutting a link
//! is a partition, not a disconnect: nothing is closed or reset, bytes
//! simply stop moving in both directions on every connection it carries,
//! and a new connection is accepted but leads nowhere, as when packets are
//! dropped on a real network. What each side's kernel already buffered
//! stays buffered. When the link heals, the connections that both ends
//! kept go on where they stopped; one that an end gave up on meanwhile
//! closes then, and the end dials again.
//!
//! The proxies run on a runtime of their own, on their own thread, so that
//! a test's waits or blocking calls never hold traffic up. Everything stops
//! when the [`FaultNet`] is dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The largest chunk one read forwards.
const CHUNK: usize = 64 * 1024;

/// One proxy: a listening port that forwards to `target` while it is not
/// cut.
pub struct Link {
    port: u16,
    cut: Arc<watch::Sender<bool>>,
}

impl Link {
    /// The loopback port to reach the target through.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the link is cut.
    pub fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

/// Waits while the link is cut; returns at once when it is not.
async fn while_cut(cut: &mut watch::Receiver<bool>) {
    // An error means the FaultNet is gone: the runtime stops with it.
    let _ = cut.wait_for(|cut| !cut).await;
}

/// Copies `from` to `to`, moving nothing while the link is cut; on end of
/// stream (or an error) shuts `to`'s writing side, as the original peer
/// did.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; CHUNK];
    loop {
        while_cut(&mut cut).await;
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        // Cut while the read was pending: the bytes wait for the heal,
        // as they would in a sender's queue.
        while_cut(&mut cut).await;
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Accepts connections on `listener` for ever, forwarding each to `target`.
async fn serve(listener: TcpListener, target: SocketAddr, cut: watch::Receiver<bool>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        let mut cut = cut.clone();
        tokio::spawn(async move {
            // A connection made during a partition hangs until the heal.
            while_cut(&mut cut).await;
            let Ok(outbound) = TcpStream::connect(target).await else {
                return; // the target is down: the caller sees a close
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            tokio::join!(
                pump(in_read, out_write, cut.clone()),
                pump(out_read, in_write, cut),
            );
        });
    }
}

/// Named links between the processes of a scenario, on one runtime.
pub struct FaultNet {
    runtime: Option<tokio::runtime::Runtime>,
    /// `(from, to)` names: the link `from` reaches `to` through.
    links: BTreeMap<(String, String), Link>,
}

impl Default for FaultNet {
    fn default() -> FaultNet {
        FaultNet::new()
    }
}

impl FaultNet {
    /// No links yet; the proxies' runtime (one worker thread) is started.
    pub fn new() -> FaultNet {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("faultnet")
            .enable_all()
            .build()
            .expect("the fault network's runtime");
        FaultNet {
            runtime: Some(runtime),
            links: BTreeMap::new(),
        }
    }

    /// A new link that `from` reaches `to` through, forwarding to `target`
    /// (a loopback port); returns the port `from` must use.
    pub fn add(&mut self, from: &str, to: &str, target: u16) -> u16 {
        let runtime = self.runtime.as_ref().expect("running");
        // Bound without `block_on`: callers may be inside another runtime.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .expect("a loopback port for a link");
        let listener = {
            let _inside = runtime.enter();
            TcpListener::from_std(listener).expect("a tokio listener")
        };
        let port = listener.local_addr().expect("bound").port();
        let (cut, watcher) = watch::channel(false);
        runtime.spawn(serve(
            listener,
            SocketAddr::from(([127, 0, 0, 1], target)),
            watcher,
        ));
        let link = Link {
            port,
            cut: Arc::new(cut),
        };
        let previous = self.links.insert((from.to_owned(), to.to_owned()), link);
        assert!(previous.is_none(), "a second link {from} -> {to}");
        port
    }

    /// The link `from` reaches `to` through.
    pub fn link(&self, from: &str, to: &str) -> &Link {
        self.links
            .get(&(from.to_owned(), to.to_owned()))
            .unwrap_or_else(|| panic!("no link {from} -> {to}"))
    }

    /// Cuts both directions between `a` and `b` (whichever links exist).
    pub fn cut(&self, a: &str, b: &str) {
        self.set(a, b, true);
    }

    /// Heals both directions between `a` and `b`.
    pub fn heal(&self, a: &str, b: &str) {
        self.set(a, b, false);
    }

    fn set(&self, a: &str, b: &str, cut: bool) {
        let mut found = false;
        for key in [(a, b), (b, a)] {
            if let Some(link) = self.links.get(&(key.0.to_owned(), key.1.to_owned())) {
                link.set_cut(cut);
                found = true;
            }
        }
        assert!(found, "no link between {a} and {b}");
    }

    /// Splits the processes named in `groups` into those groups: every
    /// link between two different groups is cut, every link within one is
    /// healed. Links to processes in no group are left as they are.
    pub fn partition(&self, groups: &[&[&str]]) {
        let group_of = |name: &str| groups.iter().position(|g| g.contains(&name));
        for ((from, to), link) in &self.links {
            if let (Some(a), Some(b)) = (group_of(from), group_of(to)) {
                link.set_cut(a != b);
            }
        }
    }

    /// Heals every link.
    pub fn heal_all(&self) {
        for link in self.links.values() {
            link.set_cut(false);
        }
    }

    /// The links that are cut, as `from -> to`, for a test's messages.
    pub fn cut_links(&self) -> Vec<String> {
        self.links
            .iter()
            .filter(|(_, link)| link.is_cut())
            .map(|((from, to), _)| format!("{from} -> {to}"))
            .collect()
    }
}

impl Drop for FaultNet {
    fn drop(&mut self) {
        // Dropping a runtime inside another one's worker panics; shutting
        // it down in the background does not block or panic.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An echo server on loopback, for the proxy's own tests.
    async fn echo_server() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    loop {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if socket.write_all(&buffer[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        port
    }

    async fn echo(socket: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
        socket.write_all(bytes).await.unwrap();
        let mut answer = vec![0u8; bytes.len()];
        socket.read_exact(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cut_link_moves_nothing_and_the_connection_goes_on_after_the_heal() {
        let target = echo_server().await;
        let mut net = FaultNet::new();
        let port = net.add("a", "b", target);
        let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        assert_eq!(echo(&mut socket, b"before").await, b"before");

        net.cut("a", "b");
        assert!(net.link("a", "b").is_cut());
        assert_eq!(net.cut_links(), ["a -> b"]);
        socket.write_all(b"during").await.unwrap();
        let mut answer = [0u8; 6];
        // Nothing comes back while the link is cut (a bounded wait: the
        // assertion is that no byte arrives, not how fast one would).
        let waited =
            tokio::time::timeout(Duration::from_millis(500), socket.read_exact(&mut answer)).await;
        assert!(waited.is_err(), "a byte crossed a cut link");
        // A new connection is accepted but leads nowhere.
        let mut second = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        second.write_all(b"new").await.unwrap();
        let mut three = [0u8; 3];
        let waited =
            tokio::time::timeout(Duration::from_millis(200), second.read_exact(&mut three)).await;
        assert!(waited.is_err(), "a new connection crossed a cut link");

        net.heal("a", "b");
        assert!(net.cut_links().is_empty());
        // What was held moves on, in order, on both connections.
        socket.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"during");
        second.read_exact(&mut three).await.unwrap();
        assert_eq!(&three, b"new");
        assert_eq!(echo(&mut socket, b"after").await, b"after");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_partition_cuts_only_the_links_between_groups() {
        let target = echo_server().await;
        let mut net = FaultNet::new();
        for from in ["x", "y", "z"] {
            for to in ["x", "y", "z"] {
                if from != to {
                    net.add(from, to, target);
                }
            }
        }
        net.add("client", "x", target);
        net.partition(&[&["x"], &["y", "z"]]);
        assert_eq!(
            net.cut_links(),
            ["x -> y", "x -> z", "y -> x", "z -> x"],
            "only links across the split are cut"
        );
        assert!(
            !net.link("client", "x").is_cut(),
            "a link outside the groups"
        );
        let mut within = TcpStream::connect(("127.0.0.1", net.link("y", "z").port()))
            .await
            .unwrap();
        assert_eq!(echo(&mut within, b"ok").await, b"ok");
        net.heal_all();
        assert!(net.cut_links().is_empty());
        let mut across = TcpStream::connect(("127.0.0.1", net.link("x", "y").port()))
            .await
            .unwrap();
        assert_eq!(echo(&mut across, b"healed").await, b"healed");
    }
}
