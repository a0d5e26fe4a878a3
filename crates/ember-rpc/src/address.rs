//! Addresses of RpcEnvs and the `ember://host:port[,host:port…]` URLs that name them.
//!
//! Spark counterpart: `RpcAddress` and `RpcEndpointAddress`.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The scheme of Ember URLs, as in `ember://host:7077`.
pub const URL_SCHEME: &str = "ember";

/// Where an RpcEnv listens: a host name (or IP literal) and a TCP port.
///
/// This is the identity of a process on the network: refs carry it, connection events name it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RpcAddress {
    /// Host name or IP address literal.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl RpcAddress {
    /// An address from its parts.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }

    /// The address as an `ember://host:port` URL.
    pub fn to_ember_url(&self) -> String {
        format!("{URL_SCHEME}://{self}")
    }

    /// `host:port`, the form socket APIs take.
    pub fn host_port(&self) -> String {
        self.to_string()
    }

    /// Parses one `ember://host:port` URL.
    pub fn from_ember_url(url: &str) -> Result<Self, AddressError> {
        let rest = url
            .strip_prefix(URL_SCHEME)
            .and_then(|r| r.strip_prefix("://"))
            .ok_or_else(|| AddressError::new(url, "must start with ember://"))?;
        if rest.contains(',') {
            return Err(AddressError::new(
                url,
                "names several masters; expected exactly one host:port",
            ));
        }
        rest.trim_end_matches('/')
            .parse::<RpcAddress>()
            .map_err(|e| AddressError::new(url, e.reason))
    }

    /// Parses a master URL that may name several masters: `ember://h1:7077,h2:7077`.
    /// Every entry after the first may repeat the scheme or omit it.
    pub fn parse_master_urls(url: &str) -> Result<Vec<Self>, AddressError> {
        let rest = url
            .strip_prefix(URL_SCHEME)
            .and_then(|r| r.strip_prefix("://"))
            .ok_or_else(|| AddressError::new(url, "must start with ember://"))?;
        let mut out = Vec::new();
        for part in rest.split(',') {
            let part = part.trim();
            let part = part
                .strip_prefix(URL_SCHEME)
                .and_then(|r| r.strip_prefix("://"))
                .unwrap_or(part)
                .trim_end_matches('/');
            if part.is_empty() {
                return Err(AddressError::new(url, "has an empty host:port entry"));
            }
            out.push(
                part.parse::<RpcAddress>()
                    .map_err(|e| AddressError::new(url, e.reason))?,
            );
        }
        Ok(out)
    }
}

/// Parses an endpoint URL `ember://Name@host:port` (the form [`EndpointRef`]s print) into the
/// address and the endpoint name.
///
/// [`EndpointRef`]: crate::EndpointRef
pub fn parse_endpoint_url(url: &str) -> Result<(RpcAddress, String), AddressError> {
    let rest = url
        .strip_prefix(URL_SCHEME)
        .and_then(|r| r.strip_prefix("://"))
        .ok_or_else(|| AddressError::new(url, "must start with ember://"))?;
    let (name, host_port) = rest.split_once('@').ok_or_else(|| {
        AddressError::new(
            url,
            "lacks the endpoint name: expected ember://Name@host:port",
        )
    })?;
    if name.is_empty() || name.len() > 255 {
        return Err(AddressError::new(
            url,
            "has an empty or over-long endpoint name",
        ));
    }
    let address = host_port
        .trim_end_matches('/')
        .parse::<RpcAddress>()
        .map_err(|e| AddressError::new(url, e.reason))?;
    Ok((address, name.to_owned()))
}

impl From<SocketAddr> for RpcAddress {
    fn from(addr: SocketAddr) -> Self {
        Self::new(addr.ip().to_string(), addr.port())
    }
}

impl fmt::Display for RpcAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for RpcAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for RpcAddress {
    type Err = AddressError;

    /// Parses `host:port` (IPv6 literals in brackets: `[::1]:7077`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, tail) = rest
                .split_once(']')
                .ok_or_else(|| AddressError::new(s, "has an unclosed '[' around an IPv6 host"))?;
            let port = tail
                .strip_prefix(':')
                .ok_or_else(|| AddressError::new(s, "lacks a port after the host"))?;
            (host, port)
        } else {
            s.rsplit_once(':')
                .ok_or_else(|| AddressError::new(s, "lacks a port; expected host:port"))?
        };
        if host.is_empty() {
            return Err(AddressError::new(s, "has an empty host"));
        }
        if host
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c == '@')
        {
            return Err(AddressError::new(s, "has a host with invalid characters"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| AddressError::new(s, format!("has an invalid port {port:?}")))?;
        Ok(Self::new(host, port))
    }
}

/// A malformed address or URL, naming the input and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {input:?}: {reason}")]
pub struct AddressError {
    /// The text that failed to parse.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl AddressError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        Self {
            input: input.to_owned(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_urls() {
        let a = RpcAddress::from_ember_url("ember://host-1:7077").unwrap();
        assert_eq!(a, RpcAddress::new("host-1", 7077));
        assert_eq!(a.to_ember_url(), "ember://host-1:7077");
        let v6: RpcAddress = "[::1]:80".parse().unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "[::1]:80");
    }

    #[test]
    fn parses_endpoint_urls() {
        let (a, n) = parse_endpoint_url("ember://CoarseGrainedScheduler@10.0.0.2:4040").unwrap();
        assert_eq!(
            (a, n.as_str()),
            (RpcAddress::new("10.0.0.2", 4040), "CoarseGrainedScheduler")
        );
        assert!(parse_endpoint_url("ember://10.0.0.2:4040").is_err());
        assert!(parse_endpoint_url("ember://@h:1").is_err());
    }

    #[test]
    fn parses_several_masters() {
        let v = RpcAddress::parse_master_urls("ember://a:1,b:2,ember://c:3").unwrap();
        assert_eq!(
            v,
            vec![
                RpcAddress::new("a", 1),
                RpcAddress::new("b", 2),
                RpcAddress::new("c", 3)
            ]
        );
    }

    #[test]
    fn rejects_bad_urls_with_reasons() {
        for bad in [
            "spark://a:1",
            "ember://a",
            "ember://a:99999",
            "ember://:1",
            "ember://a:1,,b:2",
            "a:1",
        ] {
            let err = RpcAddress::parse_master_urls(bad).unwrap_err();
            assert_eq!(err.input, bad);
        }
        assert!(RpcAddress::from_ember_url("ember://a:1,b:2").is_err());
    }
}
