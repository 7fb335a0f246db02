//! Certificates made for a test run (never checked in): a CA, certificates it signs for
//! members and clients, one from another CA, and a revoked one with its CRL, as PEM files in a
//! directory.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};

/// A certificate and its key, as files.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The test PKI: `ca.crt` signs everything but `stranger`.
pub struct Pki {
    pub ca: PathBuf,
    pub dir: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
    next_serial: u64,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(p, KeyPair::generate().expect("CA key")).expect("CA certificate")
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let issuer = ca("rustcd test CA");
        let ca = dir.join("ca.crt");
        std::fs::write(&ca, issuer.pem()).expect("write ca.crt");
        Pki { ca, dir: dir.to_path_buf(), issuer, next_serial: 100 }
    }

    fn params(&mut self, cn: &str) -> CertificateParams {
        self.params_for(cn, &["localhost", "127.0.0.1"])
    }

    fn params_for(&mut self, cn: &str, sans: &[&str]) -> CertificateParams {
        let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("SANs");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        self.next_serial += 1;
        p.serial_number = Some(SerialNumber::from(self.next_serial));
        p
    }

    fn write(&self, name: &str, cert_pem: String, key: &KeyPair) -> Pair {
        let pair = Pair { cert: self.dir.join(format!("{name}.crt")), key: self.dir.join(format!("{name}.key")) };
        std::fs::write(&pair.cert, cert_pem).expect("write cert");
        std::fs::write(&pair.key, key.serialize_pem()).expect("write key");
        pair
    }

    /// A certificate signed by the test CA, for `localhost` and `127.0.0.1`, with common name
    /// `cn`, usable to serve and as a client.
    pub fn issue(&mut self, name: &str, cn: &str) -> Pair {
        let key = KeyPair::generate().expect("key");
        let cert = self.params(cn).signed_by(&key, &self.issuer).expect("sign");
        self.write(name, cert.pem(), &key)
    }

    /// A certificate signed by the test CA for other names than this machine's (`sans`).
    pub fn issue_for(&mut self, name: &str, cn: &str, sans: &[&str]) -> Pair {
        let key = KeyPair::generate().expect("key");
        let cert = self.params_for(cn, sans).signed_by(&key, &self.issuer).expect("sign");
        self.write(name, cert.pem(), &key)
    }

    /// A certificate that another CA signed.
    pub fn stranger(&mut self, name: &str, cn: &str) -> Pair {
        let other = ca("another CA");
        let key = KeyPair::generate().expect("key");
        let cert = self.params(cn).signed_by(&key, &other).expect("sign");
        self.write(name, cert.pem(), &key)
    }

    /// A certificate signed by the test CA and revoked, and the CRL that revokes it.
    pub fn revoked(&mut self, name: &str, cn: &str) -> (Pair, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let params = self.params(cn);
        let serial = params.serial_number.clone().expect("serial");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let now = time::OffsetDateTime::now_utc();
        let crl = CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(1),
            next_update: now + time::Duration::days(1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: serial,
                revocation_time: now - time::Duration::minutes(1),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .expect("sign the CRL");
        let crl_path = self.dir.join("revoked.crl");
        std::fs::write(&crl_path, crl.pem().expect("CRL PEM")).expect("write CRL");
        (self.write(name, cert.pem(), &key), crl_path)
    }
}
