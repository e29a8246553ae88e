//! `mqtts://`: the rustls client configuration of a bridge, from PEM files (ring as the crypto
//! provider, passed explicitly: no process-wide default is installed).

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::spec::{InvalidBridge, TlsSpec};

fn invalid(field: &str, message: impl std::fmt::Display) -> InvalidBridge {
    InvalidBridge { field: format!("tls.{field}"), message: message.to_string() }
}

fn certificates(field: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, InvalidBridge> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(field, format!("{path}: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(field, format!("{path}: {e}")))?;
    if certificates.is_empty() {
        return Err(invalid(field, format!("{path}: no PEM certificate in it")));
    }
    Ok(certificates)
}

/// The client configuration `tls` describes: the broker's certificate checked against `ca_file`
/// (else the system's trust store), and a client certificate when one is given.
pub(super) fn client_config(tls: &TlsSpec) -> Result<Arc<ClientConfig>, InvalidBridge> {
    match (&tls.cert_file, &tls.key_file) {
        (Some(_), None) => return Err(invalid("key_file", "a client certificate needs its key_file")),
        (None, Some(_)) => return Err(invalid("cert_file", "a client key needs its cert_file")),
        _ => {}
    }
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            for certificate in certificates("ca_file", path)? {
                roots.add(certificate).map_err(|e| invalid("ca_file", format!("{path}: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
                return Err(invalid(
                    "ca_file",
                    format!("no ca_file given and no system trust store found ({})", errors.join("; ")),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("ca_file", e))?
        .with_root_certificates(roots);
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = certificates("cert_file", cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid("key_file", format!("{key}: {e}")))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| invalid("key_file", e))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
