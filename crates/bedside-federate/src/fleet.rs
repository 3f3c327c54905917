//! Fleet API client: protobuf bodies POSTed to `/v1/fleet/<call>` (flwr ≥ 1.40).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;

use crate::FederateError;
use crate::auth::NodeKey;
use crate::proto;

/// Largest response body accepted (objects are ≤ 5 MiB chunks; messages are metadata).
const MAX_RESPONSE: u64 = 64 * 1024 * 1024;

/// Connection settings.
#[derive(Clone, Debug, Default)]
pub struct Transport {
    /// `host:port` of the SuperLink.
    pub address: String,
    /// Plain HTTP (tests and loopback only).
    pub insecure: bool,
    /// PEM CA bundle that signed the SuperLink's certificate.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate chain and key, for an mTLS proxy in front of the SuperLink.
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
}

/// A Fleet API client that signs every call with the node key.
pub struct FleetClient {
    agent: ureq::Agent,
    base: String,
    key: Arc<NodeKey>,
    /// Bytes of request and response bodies so far (wire accounting for benchmarks).
    pub bytes_sent: std::sync::atomic::AtomicU64,
    /// See `bytes_sent`.
    pub bytes_received: std::sync::atomic::AtomicU64,
}

impl FleetClient {
    /// Builds the client; TLS uses rustls with only the configured CA as trust root.
    pub fn new(transport: &Transport, key: Arc<NodeKey>) -> Result<Self, FederateError> {
        use ureq::tls::{Certificate, ClientCert, PemItem, RootCerts, TlsConfig};
        let tls_err = |what: &str| FederateError::Tls(what.to_string());
        let mut tls = TlsConfig::builder();
        if let Some(pem) = &transport.ca_pem {
            let mut certs = Vec::new();
            for item in ureq::tls::parse_pem(pem) {
                if let Ok(PemItem::Certificate(c)) = item {
                    certs.push(c);
                }
            }
            if certs.is_empty() {
                return Err(tls_err("CA file holds no certificate"));
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        if let Some((chain_pem, key_pem)) = &transport.client_cert {
            let chain: Vec<Certificate<'static>> = ureq::tls::parse_pem(chain_pem)
                .filter_map(|i| match i {
                    Ok(PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            let key = ureq::tls::PrivateKey::from_pem(key_pem)
                .map_err(|_| tls_err("client key is not a PEM private key"))?;
            let Some(leaf) = chain.first() else {
                return Err(tls_err("client certificate file holds no certificate"));
            };
            // webpki accepts only X.509 v3 end-entity certificates; refuse others here with
            // a clear error rather than inside the TLS stack at the first call.
            let der = pki_types::CertificateDer::from(leaf.der());
            webpki::EndEntityCert::try_from(&der).map_err(|e| {
                FederateError::Tls(format!(
                    "client certificate unusable ({e:?}); it must be an X.509 v3 certificate (openssl x509 -req … -extfile with extensions)"
                ))
            })?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let scheme = if transport.insecure { "http" } else { "https" };
        Ok(FleetClient {
            agent,
            base: format!("{scheme}://{}", transport.address),
            key,
            bytes_sent: 0.into(),
            bytes_received: 0.into(),
        })
    }

    /// Reads `path` if set.
    pub fn read_pem(path: Option<&Path>) -> Result<Option<Vec<u8>>, FederateError> {
        path.map(|p| {
            std::fs::read(p).map_err(|e| FederateError::Tls(format!("{}: {e}", p.display())))
        })
        .transpose()
    }

    /// One call: `call` is the path segment after `/v1/fleet/`.
    pub fn call<Req: Message, Resp: Message + Default>(
        &self,
        call: &str,
        request: &Req,
    ) -> Result<Resp, FederateError> {
        self.call_with_headers(call, request, &self.key.headers())
    }

    /// A call with explicit authentication headers (tests forge bad ones).
    pub fn call_with_headers<Req: Message, Resp: Message + Default>(
        &self,
        call: &str,
        request: &Req,
        headers: &[(&'static str, String)],
    ) -> Result<Resp, FederateError> {
        use std::sync::atomic::Ordering::Relaxed;
        let body = request.encode_to_vec();
        let mut req = self
            .agent
            .post(&format!("{}/v1/fleet/{call}", self.base))
            .header("content-type", "application/protobuf")
            .header("accept", "application/protobuf");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        self.bytes_sent.fetch_add(body.len() as u64, Relaxed);
        let mut resp = req.send(&body[..]).map_err(|e| FederateError::Http {
            call: call.to_string(),
            status: 0,
            detail: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_vec()
            .map_err(|e| FederateError::Http {
                call: call.to_string(),
                status,
                detail: e.to_string(),
            })?;
        self.bytes_received.fetch_add(bytes.len() as u64, Relaxed);
        if status != 200 {
            let detail = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
            return Err(FederateError::Http {
                call: call.to_string(),
                status,
                detail,
            });
        }
        Resp::decode(&bytes[..]).map_err(|_| FederateError::Http {
            call: call.to_string(),
            status,
            detail: "response is not the expected protobuf".into(),
        })
    }

    /// The node key's public PEM bytes.
    pub fn public_key(&self) -> Vec<u8> {
        self.key.public_pem().as_bytes().to_vec()
    }
}

/// A `Node` message.
pub fn node(node_id: u64) -> Option<proto::Node> {
    Some(proto::Node { node_id })
}
