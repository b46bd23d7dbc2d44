//! libiscsi-style iSCSI URLs: `iscsi://[user[%password]@]host[:port][/target-iqn[/lun]]`, and
//! `iser://...` (libiscsi's scheme) for the same over iSER (RDMA).

use std::fmt;

/// The default iSCSI port.
pub const DEFAULT_PORT: u16 = 3260;

/// A parsed iSCSI URL.
///
/// ```
/// use iscsi::initiator::IscsiUrl;
///
/// let url: IscsiUrl = "iscsi://alice%s3cret@[::1]:3261/iqn.2026-11.rs.iscsi:disk/1".parse().unwrap();
/// assert_eq!(url.portal(), "[::1]:3261");
/// assert_eq!(url.target.as_deref(), Some("iqn.2026-11.rs.iscsi:disk"));
/// assert_eq!(url.lun, 1);
/// assert_eq!(url.user.as_deref(), Some("alice"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct IscsiUrl {
    /// `iser://`: iSCSI over RDMA (iSER) instead of TCP.
    pub iser: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Target name; `None` for a portal-only URL (discovery).
    pub target: Option<String>,
    /// Logical unit number (0 when absent).
    pub lun: u16,
    /// CHAP user name.
    pub user: Option<String>,
    /// CHAP secret.
    pub password: Option<String>,
}

impl fmt::Debug for IscsiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IscsiUrl")
            .field("iser", &self.iser)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("target", &self.target)
            .field("lun", &self.lun)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl fmt::Display for IscsiUrl {
    /// The URL without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", if self.iser { "iser" } else { "iscsi" })?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        write!(f, "{}", self.portal())?;
        if let Some(t) = &self.target {
            write!(f, "/{t}/{}", self.lun)?;
        }
        Ok(())
    }
}

/// Why a URL did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid iSCSI URL {url:?}: {why} (expected iscsi://[user[%password]@]host[:port]/target-iqn/lun)"
)]
pub struct UrlError {
    /// The URL, password removed.
    pub url: String,
    /// What is wrong.
    pub why: &'static str,
}

impl IscsiUrl {
    /// `host:port`, with an IPv6 host in brackets.
    pub fn portal(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for IscsiUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, UrlError> {
        let fail = |why| UrlError {
            url: match s.split_once('%') {
                Some((head, tail)) => match tail.split_once('@') {
                    Some((_, rest)) => format!("{head}%<hidden>@{rest}"),
                    None => head.to_owned(),
                },
                None => s.to_owned(),
            },
            why,
        };
        let (iser, rest) = match (s.strip_prefix("iscsi://"), s.strip_prefix("iser://")) {
            (Some(rest), _) => (false, rest),
            (None, Some(rest)) => (true, rest),
            (None, None) => return Err(fail("it does not start with iscsi:// or iser://")),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once('%') {
                Some((user, pw)) => (Some(user.to_owned()), Some(pw.to_owned())),
                None => (Some(u.to_owned()), None),
            },
        };
        if user.as_deref() == Some("") {
            return Err(fail("empty user name"));
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| fail("unclosed [ in the host"))?;
            match after {
                "" => (h, None),
                p => (
                    h,
                    Some(p.strip_prefix(':').ok_or_else(|| fail("junk after ]"))?),
                ),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(fail("no host"));
        }
        if host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '[' | ']' | '/' | '@'))
        {
            return Err(fail(
                "the host has characters a host name or address cannot have",
            ));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p.parse().map_err(|_| fail("the port is not a number"))?,
        };
        let path = path.trim_end_matches('/');
        let (target, lun) = if path.is_empty() {
            (None, 0)
        } else {
            match path.rsplit_once('/') {
                Some((t, l)) => (
                    Some(t),
                    l.parse::<u16>()
                        .map_err(|_| fail("the LUN is not a number 0..65535"))?,
                ),
                None => (Some(path), 0),
            }
        };
        if target.is_some_and(str::is_empty) {
            return Err(fail("empty target name"));
        }
        let printable = |t: &str| !t.chars().any(|c| c.is_whitespace() || c.is_control());
        if !target.is_none_or(printable) || !user.as_deref().is_none_or(printable) {
            return Err(fail(
                "the target or user name has spaces or control characters",
            ));
        }
        Ok(IscsiUrl {
            iser,
            host: host.to_owned(),
            port,
            target: target.map(str::to_owned),
            lun,
            user,
            password,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms() {
        let u: IscsiUrl = "iscsi://127.0.0.1/iqn.a:b/3".parse().unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_deref(), u.lun),
            ("127.0.0.1", 3260, Some("iqn.a:b"), 3)
        );
        let u: IscsiUrl = "iscsi://h:99".parse().unwrap();
        assert_eq!((u.port, u.target), (99, None));
        let u: IscsiUrl = "iscsi://u@h/iqn.a:b".parse().unwrap();
        assert_eq!((u.user.as_deref(), u.password, u.lun), (Some("u"), None, 0));
        let u: IscsiUrl = "iscsi://u%p%q@[fe80::1]/iqn.a:b/0/".parse().unwrap();
        assert_eq!(u.password.as_deref(), Some("p%q"));
        assert_eq!(u.portal(), "[fe80::1]:3260");
        assert_eq!(u.to_string(), "iscsi://u@[fe80::1]:3260/iqn.a:b/0");
        assert!(!format!("{u:?}").contains("p%q"));
        assert!(!u.iser);
        let u: IscsiUrl = "iser://192.0.2.1/iqn.a:b/2".parse().unwrap();
        assert!(u.iser);
        assert_eq!((u.portal().as_str(), u.lun), ("192.0.2.1:3260", 2));
        assert_eq!(u.to_string(), "iser://192.0.2.1:3260/iqn.a:b/2");
    }

    #[test]
    fn refuses_bad_ones_without_leaking_the_password() {
        for bad in [
            "http://h/iqn.a:b/0",
            "iser:/h/iqn.a:b/0",
            "iscsi:///iqn.a:b/0",
            "iscsi://h:x/iqn.a:b/0",
            "iscsi://h/iqn.a:b/70000",
            "iscsi://[::1/iqn.a:b/0",
            "iscsi://@h/t/0",
            "iscsi://u@st[erc3::1]:3261/t/1",
            "iscsi://h/iqn a:b/0",
            "iscsi://h/iqn.a:b\u{1}/0",
        ] {
            assert!(bad.parse::<IscsiUrl>().is_err(), "{bad}");
        }
        let e = "iscsi://u%secret@h:x/t/0".parse::<IscsiUrl>().unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
