//! The embedded S3-compatible server: path-style S3 over a directory (each
//! bucket a subdirectory), served on loopback by `s3s` with the `s3s-fs`
//! backend, SigV4-verified against one access key / secret key pair. It runs
//! in the foreground until SIGTERM or SIGINT, and prints one line,
//! `S3 server listening on http://ADDR`, once it accepts connections.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{anyhow, Context as _, Result};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

/// What to serve, where, and for whom.
pub struct Options {
    pub dir: PathBuf,
    pub address: SocketAddr,
    /// (access key, secret key); `None` serves anonymous requests only.
    pub credentials: Option<(String, String)>,
    /// Buckets to create (as directories) before serving.
    pub buckets: Vec<String>,
}

/// A bucket name S3 accepts: 3-63 of `a-z 0-9 . -`, starting and ending alphanumeric.
pub fn valid_bucket(name: &str) -> bool {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let edge = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (3..=63).contains(&name.len())
        && ok_chars
        && edge(name.bytes().next())
        && edge(name.bytes().last())
}

/// Serves until SIGTERM or SIGINT.
pub fn serve(opts: Options) -> Result<()> {
    crate::fsutil::create_dir_shared(&opts.dir)?;
    for b in &opts.buckets {
        if !valid_bucket(b) {
            anyhow::bail!("invalid bucket name {b:?}");
        }
        let p = opts.dir.join(b);
        std::fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(opts))
}

async fn run(opts: Options) -> Result<()> {
    let fs = s3s_fs::FileSystem::new(&opts.dir)
        .map_err(|e| anyhow!("cannot serve {}: {e:?}", opts.dir.display()))?;
    let mut builder = S3ServiceBuilder::new(fs);
    if let Some((access, secret)) = &opts.credentials {
        builder.set_auth(SimpleAuth::from_single(access.clone(), secret.clone()));
    }
    let service = builder.build();
    let listener = TcpListener::bind(opts.address)
        .await
        .with_context(|| format!("cannot listen on {}", opts.address))?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    println!("S3 server listening on http://{local}");
    if opts.credentials.is_none() {
        eprintln!("WARNING no credentials given: only anonymous requests are served");
    }
    let http = ConnBuilder::new(TokioExecutor::new());
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    loop {
        let socket = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => {
                    // A response written in two parts must not wait for the
                    // client's delayed ACK (about 40 ms a request on a
                    // reused connection).
                    if let Err(e) = s.set_nodelay(true) {
                        eprintln!("WARNING cannot set TCP_NODELAY: {e}");
                    }
                    s
                }
                Err(e) => {
                    eprintln!("WARNING cannot accept a connection: {e}");
                    continue;
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        let conn = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        assert!(valid_bucket("juju-local"));
        assert!(valid_bucket("a.b-c1"));
        assert!(!valid_bucket("ab"));
        assert!(!valid_bucket("Upper"));
        assert!(!valid_bucket("-edge"));
        assert!(!valid_bucket("a/b"));
    }
}
