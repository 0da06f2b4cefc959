//! Which webhook URLs the server will call: the guard against server-side request forgery.
//!
//! A webhook URL is chosen by faculty, but the request comes from the server, from inside
//! the school's network. Without a guard, registering `http://10.0.0.5/admin` or the cloud
//! metadata address would make the server call them. So only `http`/`https` URLs without
//! credentials are accepted, and the host must be, or resolve only to, public unicast
//! addresses: loopback, private, link-local, shared (CGNAT), unique-local, unspecified,
//! multicast, broadcast and reserved addresses are refused, including IPv4 addresses
//! written in IPv6 forms (mapped, compatible, NAT64, 6to4), and `localhost` names are
//! refused without asking DNS. `--webhooks-allow-private` lets private and local
//! addresses through (tests, on-premise receivers); unspecified, multicast, broadcast and
//! reserved addresses are never a receiver.
//!
//! The check runs at registration and again at every connection: DNS answers can change
//! after registration (DNS rebinding), so the delivery client resolves names through
//! [`GuardedResolver`], which checks every address it returns, and the connection goes to
//! exactly those checked addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address is not a public unicast address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddressClass {
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`, and IPv6 site-local `fec0::/10`.
    Private,
    /// `169.254/16`, `fe80::/10` (the cloud metadata address is link-local).
    LinkLocal,
    /// `100.64/10`, shared address space behind carrier-grade NAT.
    SharedCgnat,
    /// `fc00::/7`, IPv6 unique local addresses.
    UniqueLocal,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `240/4` (future use) and other ranges no receiver can have.
    Reserved,
}

impl AddressClass {
    /// Words for error messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Unspecified => "an unspecified address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private address",
            Self::LinkLocal => "a link-local address",
            Self::SharedCgnat => "a shared (CGNAT) address",
            Self::UniqueLocal => "a unique local IPv6 address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "a broadcast address",
            Self::Reserved => "a reserved address",
        }
    }

    /// Whether `--webhooks-allow-private` lets it through: addresses of this machine and
    /// its networks, where an on-premise receiver may live; never addresses that cannot be
    /// a receiver at all.
    fn allowed_with_private(self) -> bool {
        match self {
            Self::Loopback
            | Self::Private
            | Self::LinkLocal
            | Self::SharedCgnat
            | Self::UniqueLocal => true,
            Self::Unspecified | Self::Multicast | Self::Broadcast | Self::Reserved => false,
        }
    }
}

/// The class of a non-public address; `None` for a public unicast address.
pub(crate) fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    let [a, b, _, _] = ip.octets();
    let class = if a == 0 {
        AddressClass::Unspecified
    } else if a == 127 {
        AddressClass::Loopback
    } else if a == 10 || (a == 172 && (16..=31).contains(&b)) || (a == 192 && b == 168) {
        AddressClass::Private
    } else if a == 169 && b == 254 {
        AddressClass::LinkLocal
    } else if a == 100 && (64..=127).contains(&b) {
        AddressClass::SharedCgnat
    } else if ip.is_broadcast() {
        AddressClass::Broadcast
    } else if (224..=239).contains(&a) {
        AddressClass::Multicast
    } else if a >= 240 {
        AddressClass::Reserved
    } else {
        return None;
    };
    Some(class)
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    if ip.is_unspecified() {
        return Some(AddressClass::Unspecified);
    }
    if ip.is_loopback() {
        return Some(AddressClass::Loopback);
    }
    // IPv4 written as IPv6 reaches the IPv4 address: judge that one. Mapped
    // (`::ffff:a.b.c.d`), compatible (`::a.b.c.d`, deprecated but still routed by some
    // stacks), NAT64 (`64:ff9b::a.b.c.d`) and 6to4 (`2002:aabb:ccdd::`).
    let segments = ip.segments();
    let octets = ip.octets();
    let embedded =
        |at: usize| Ipv4Addr::new(octets[at], octets[at + 1], octets[at + 2], octets[at + 3]);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if segments[..6] == [0, 0, 0, 0, 0, 0] {
        return classify_v4(embedded(12));
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(embedded(12));
    }
    if segments[0] == 0x2002 {
        return classify_v4(embedded(2));
    }
    let first = segments[0];
    let class = if first & 0xff00 == 0xff00 {
        AddressClass::Multicast
    } else if first & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if first & 0xffc0 == 0xfec0 {
        AddressClass::Private
    } else if first & 0xfe00 == 0xfc00 {
        AddressClass::UniqueLocal
    } else {
        return None;
    };
    Some(class)
}

/// Why a webhook URL is not acceptable. The messages are shown to faculty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UrlError {
    /// Not a URL, or not one the server calls.
    #[error("{0}")]
    Invalid(String),
    /// The host is, or resolves to, an address the server does not call.
    #[error("{host} is {} ({address}); webhooks go to public addresses only (an operator can allow private ones with --webhooks-allow-private)", .class.describe())]
    Refused {
        /// The host as written.
        host: String,
        /// The refused address.
        address: IpAddr,
        /// What it is.
        class: AddressClass,
    },
    /// A `localhost` name.
    #[error(
        "{0} is this machine; webhooks go to public addresses only (an operator can allow private ones with --webhooks-allow-private)"
    )]
    LocalName(String),
    /// The name does not resolve (now).
    #[error("{host} cannot be resolved: {reason}")]
    Unresolvable {
        /// The host as written.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
}

/// The policy: whether private addresses are allowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Guard {
    /// `--webhooks-allow-private`.
    pub(crate) allow_private: bool,
}

impl Guard {
    /// Whether the server may connect to `address`; the error names `host`.
    pub(crate) fn check_address(&self, host: &str, address: IpAddr) -> Result<(), UrlError> {
        match classify(address) {
            None => Ok(()),
            Some(class) if self.allow_private && class.allowed_with_private() => Ok(()),
            Some(class) => Err(UrlError::Refused {
                host: host.to_owned(),
                address,
                class,
            }),
        }
    }

    /// Checks everything about `url` that needs no DNS: scheme, credentials, and the host
    /// when it is an address or a `localhost` name. Returns the parsed URL.
    pub(crate) fn check_url(&self, url: &str) -> Result<Url, UrlError> {
        let parsed = Url::parse(url)
            .map_err(|error| UrlError::Invalid(format!("url is not a valid URL: {error}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(UrlError::Invalid(
                "url must start with http:// or https://".into(),
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(UrlError::Invalid(
                "url must not contain a user name or password (deliveries are signed instead)"
                    .into(),
            ));
        }
        match host_of(&parsed) {
            None => return Err(UrlError::Invalid("url must name a host".into())),
            Some(UrlHost::Ip(address)) => {
                let host = parsed.host_str().unwrap_or_default().to_owned();
                self.check_address(&host, address)?;
            }
            Some(UrlHost::Domain(name)) => {
                if !self.allow_private && is_local_name(name) {
                    return Err(UrlError::LocalName(name.to_owned()));
                }
            }
        }
        Ok(parsed)
    }

    /// Checks `url` completely: [`Guard::check_url`], then, for a name, every address it
    /// resolves to now (at registration; deliveries check again when they connect).
    pub(crate) async fn check_url_resolved(&self, url: &str) -> Result<Url, UrlError> {
        let parsed = self.check_url(url)?;
        if let Some(UrlHost::Domain(name)) = host_of(&parsed) {
            let port = parsed.port_or_known_default().unwrap_or(80);
            let addresses = lookup(name, port).await?;
            for address in addresses {
                self.check_address(name, address.ip())?;
            }
        }
        Ok(parsed)
    }
}

/// A URL's host: an address, or a name to resolve.
enum UrlHost<'a> {
    Ip(IpAddr),
    Domain(&'a str),
}

/// The host of `url`. The URL parser already normalised IPv4 in any spelling (`0x7f.1`,
/// `2130706433`) to dotted form, and writes IPv6 in brackets.
fn host_of(url: &Url) -> Option<UrlHost<'_>> {
    let host = url.host_str()?;
    if let Some(inner) = host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        return inner
            .parse::<Ipv6Addr>()
            .ok()
            .map(|v6| UrlHost::Ip(IpAddr::V6(v6)));
    }
    if let Ok(v4) = host.parse::<Ipv4Addr>() {
        return Some(UrlHost::Ip(IpAddr::V4(v4)));
    }
    Some(UrlHost::Domain(host))
}

/// `localhost` and its relatives, which resolve to this machine without asking DNS.
fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name == "ip6-localhost"
        || name == "ip6-loopback"
}

/// Resolves `name`; an empty answer is an error.
async fn lookup(name: &str, port: u16) -> Result<Vec<SocketAddr>, UrlError> {
    let unresolvable = |reason: String| UrlError::Unresolvable {
        host: name.to_owned(),
        reason,
    };
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
        .await
        .map_err(|error| unresolvable(error.to_string()))?
        .collect();
    if addresses.is_empty() {
        return Err(unresolvable("no addresses".into()));
    }
    Ok(addresses)
}

/// The delivery client's resolver: resolves a name, refuses the connection if any of its
/// addresses is not allowed, and otherwise hands exactly the checked addresses to the
/// connector. So what was checked is what is connected to, whatever DNS says a moment
/// later. (IP-literal URLs never reach a resolver; [`Guard::check_url`] checks them.)
#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver {
    /// The policy.
    pub(crate) guard: Guard,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard;
        Box::pin(async move {
            let checked = resolve_checked(guard, name.as_str()).await;
            checked
                .map(|addresses| Box::new(addresses.into_iter()) as Addrs)
                .map_err(|error| Box::new(error) as Box<dyn std::error::Error + Send + Sync>)
        })
    }
}

/// Resolves `host` and checks every address.
async fn resolve_checked(guard: Guard, host: &str) -> Result<Vec<SocketAddr>, UrlError> {
    if !guard.allow_private && is_local_name(host) {
        return Err(UrlError::LocalName(host.to_owned()));
    }
    // Port 0: the connector puts the URL's port in.
    let addresses = lookup(host, 0).await?;
    for address in &addresses {
        guard.check_address(host, address.ip())?;
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(text: &str) -> Option<AddressClass> {
        classify(text.parse().expect("an address"))
    }

    #[test]
    fn public_addresses_pass() {
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.1.1",
            "2606:4700:4700::1111",
            "2001:db8::1",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(class(address), None, "{address}");
        }
    }

    #[test]
    fn ipv4_classes() {
        use AddressClass::*;
        let cases = [
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("169.254.169.254", LinkLocal),
            ("100.64.0.1", SharedCgnat),
            ("100.127.255.255", SharedCgnat),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
        ];
        for (address, expected) in cases {
            assert_eq!(class(address), Some(expected), "{address}");
        }
    }

    #[test]
    fn ipv6_classes_and_ipv4_in_ipv6_forms() {
        use AddressClass::*;
        let cases = [
            ("::", Unspecified),
            ("::1", Loopback),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", Private),
            ("fc00::1", UniqueLocal),
            ("fdff:ffff::1", UniqueLocal),
            ("ff02::1", Multicast),
            // IPv4-mapped and -compatible forms of refused IPv4 addresses.
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:10.1.2.3", Private),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:0.0.0.0", Unspecified),
            ("::127.0.0.1", Loopback),
            ("::192.168.0.1", Private),
            ("::10.0.0.1", Private),
            // NAT64 and 6to4 reach the embedded IPv4 address.
            ("64:ff9b::10.0.0.1", Private),
            ("64:ff9b::127.0.0.1", Loopback),
            ("2002:a9fe:a9fe::1", LinkLocal),
            ("2002:7f00:1::", Loopback),
        ];
        for (address, expected) in cases {
            assert_eq!(class(address), Some(expected), "{address}");
        }
    }

    #[test]
    fn urls_are_checked_before_any_lookup() {
        let strict = Guard {
            allow_private: false,
        };
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:7f00:1]/",
            "http://0x7f.1/",
            "http://2130706433/",
            "http://10.1.2.3/",
            "http://0.0.0.0/",
        ] {
            assert!(
                matches!(strict.check_url(url), Err(UrlError::Refused { .. })),
                "{url}: {:?}",
                strict.check_url(url)
            );
        }
        for url in [
            "http://localhost/",
            "http://LOCALHOST./x",
            "http://a.b.localhost/",
        ] {
            assert!(
                matches!(strict.check_url(url), Err(UrlError::LocalName(_))),
                "{url}"
            );
        }
        for url in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "http://user:pass@example.com/",
            "http://user@example.com/",
            "not a url",
            "gopher://example.com/",
        ] {
            assert!(
                matches!(strict.check_url(url), Err(UrlError::Invalid(_))),
                "{url}"
            );
        }
        assert!(strict.check_url("https://example.com/hooks?x=1").is_ok());
        assert!(strict.check_url("http://93.184.216.34:8443/").is_ok());
    }

    #[test]
    fn the_flag_allows_local_networks_but_never_non_receivers() {
        let open = Guard {
            allow_private: true,
        };
        for url in [
            "http://127.0.0.1:8080/",
            "http://[::1]/",
            "http://10.0.0.1/",
            "http://localhost/",
            "http://169.254.1.1/",
        ] {
            assert!(open.check_url(url).is_ok(), "{url}");
        }
        for url in [
            "http://0.0.0.0/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
        ] {
            assert!(
                matches!(open.check_url(url), Err(UrlError::Refused { .. })),
                "{url}"
            );
        }
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_refused_addresses() {
        let resolver = GuardedResolver {
            guard: Guard {
                allow_private: false,
            },
        };
        let name: Name = "localhost".parse().expect("name");
        assert!(resolver.resolve(name).await.is_err());
        let open = GuardedResolver {
            guard: Guard {
                allow_private: true,
            },
        };
        let name: Name = "localhost".parse().expect("name");
        let addresses: Vec<SocketAddr> = open.resolve(name).await.expect("resolves").collect();
        assert!(addresses.iter().all(|address| address.ip().is_loopback()));
        assert!(!addresses.is_empty());
    }
}
