//! `redis://[user:password@]host[:port][/db]` and `rediss://` (TLS).

use crate::error::{Error, Kind, Result};

/// What a URL says.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Url {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port (default 6379).
    pub port: u16,
    /// `rediss://`.
    pub tls: bool,
    /// The user, if given.
    pub user: Option<String>,
    /// The password, if given.
    pub password: Option<String>,
}

impl std::fmt::Debug for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Url")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

pub(crate) fn unescape(s: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::new(Kind::Config, "bad %-escape in the URL"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| Error::new(Kind::Config, "the URL's credentials are not UTF-8"))
}

impl Url {
    /// Parses a URL.
    ///
    /// ```
    /// let u = replica_net::Url::parse("rediss://repl:p%40ss@[::1]:6380/0").unwrap();
    /// assert_eq!((u.host.as_str(), u.port, u.tls), ("::1", 6380, true));
    /// assert_eq!((u.user.as_deref(), u.password.as_deref()), (Some("repl"), Some("p@ss")));
    /// assert!(!format!("{u:?}").contains("p@ss"));
    /// assert_eq!(replica_net::Url::parse("redis://:secret@host").unwrap().user, None);
    /// ```
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |why: &str| Error::new(Kind::Config, format!("bad URL: {why}"));
        let (tls, rest) = if let Some(r) = url.strip_prefix("redis://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("rediss://") {
            (true, r)
        } else {
            return Err(bad("expected redis:// or rediss://"));
        };
        let rest = rest.split(['/', '?']).next().unwrap_or_default();
        let (creds, hostport) = match rest.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, rest),
        };
        let (user, password) = match creds {
            None => (None, None),
            Some(c) => match c.split_once(':') {
                Some((u, p)) => (
                    (!u.is_empty()).then(|| unescape(u)).transpose()?,
                    Some(unescape(p)?),
                ),
                None => (None, Some(unescape(c)?)),
            },
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in the host"))?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
            None => 6379,
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            tls,
            user,
            password,
        })
    }
}
