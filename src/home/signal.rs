//! The wake signal: a connected pair of sockets, one end written by any thread without the
//! interpreter, the other watched by the loop (asyncio `add_reader`, trio `wait_readable`).
//!
//! Unix uses a socket pair. Elsewhere (Windows' selector loop and trio watch sockets, not
//! pipes) a loopback TCP pair does the same job; it is also built on Unix, and chosen there by
//! the environment variable `PYO3_ASYNC_LOOPBACK_SIGNAL=1`, so that the tests exercise it.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};

pub(crate) struct Signal {
    ends: Ends,
}

enum Ends {
    #[cfg(unix)]
    Unix {
        write: std::os::unix::net::UnixStream,
        read: std::os::unix::net::UnixStream,
    },
    Loopback {
        write: TcpStream,
        read: TcpStream,
    },
}

impl Signal {
    pub(crate) fn new() -> io::Result<Self> {
        let ends = if loopback_chosen() {
            loopback_pair()?
        } else {
            native_pair()?
        };
        Ok(Signal { ends })
    }

    /// The end the loop watches, as Python's `fileno()` would give it.
    pub(crate) fn watched(&self) -> i64 {
        match &self.ends {
            #[cfg(unix)]
            Ends::Unix { read, .. } => i64::from(std::os::fd::AsRawFd::as_raw_fd(read)),
            Ends::Loopback { read, .. } => raw_socket(read),
        }
    }

    /// Any thread: makes the watched end readable. A full buffer already holds a signal and a
    /// closed peer reads none: either way there is nothing more to do.
    pub(crate) fn raise(&self) {
        let _ = match &self.ends {
            #[cfg(unix)]
            Ends::Unix { write, .. } => (&*write).write(&[1]),
            Ends::Loopback { write, .. } => (&*write).write(&[1]),
        };
    }

    /// The loop thread: consumes every signal raised so far.
    pub(crate) fn clear(&self) {
        let mut sink = [0u8; 256];
        loop {
            let read = match &self.ends {
                #[cfg(unix)]
                Ends::Unix { read, .. } => (&*read).read(&mut sink),
                Ends::Loopback { read, .. } => (&*read).read(&mut sink),
            };
            match read {
                // A stream socket gives all it holds, up to the buffer: a short read emptied it
                // (a signal raised since is a new one, which the loop will see).
                Ok(read) if read < sink.len() => break,
                Ok(_) => continue,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    }
}

fn loopback_chosen() -> bool {
    cfg!(not(unix)) || std::env::var_os("PYO3_ASYNC_LOOPBACK_SIGNAL").is_some_and(|v| v == "1")
}

#[cfg(unix)]
fn native_pair() -> io::Result<Ends> {
    let (write, read) = std::os::unix::net::UnixStream::pair()?;
    write.set_nonblocking(true)?;
    read.set_nonblocking(true)?;
    Ok(Ends::Unix { write, read })
}

#[cfg(not(unix))]
fn native_pair() -> io::Result<Ends> {
    loopback_pair()
}

/// Two connected loopback TCP sockets, with Nagle off so that a one-byte signal leaves at once.
fn loopback_pair() -> io::Result<Ends> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let write = TcpStream::connect(listener.local_addr()?)?;
    // Accept only our own connection: another local process could race to connect.
    let read = loop {
        let (read, peer) = listener.accept()?;
        if peer == write.local_addr()? {
            break read;
        }
    };
    write.set_nodelay(true)?;
    write.set_nonblocking(true)?;
    read.set_nonblocking(true)?;
    Ok(Ends::Loopback { write, read })
}

#[cfg(unix)]
fn raw_socket(socket: &TcpStream) -> i64 {
    i64::from(std::os::fd::AsRawFd::as_raw_fd(socket))
}

#[cfg(windows)]
fn raw_socket(socket: &TcpStream) -> i64 {
    // Socket handles fit Python's int; `select` takes them as such.
    std::os::windows::io::AsRawSocket::as_raw_socket(socket) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(ends: Ends) {
        let signal = Signal { ends };
        signal.clear();
        for _ in 0..10_000 {
            signal.raise(); // more than a socket buffer holds: never blocks
        }
        signal.clear();
        assert!(signal.watched() >= 0);
    }

    #[test]
    #[cfg(unix)]
    fn native_pair_never_blocks_the_raiser() {
        round_trip(native_pair().unwrap());
    }

    #[test]
    fn loopback_pair_never_blocks_the_raiser() {
        round_trip(loopback_pair().unwrap());
    }
}
