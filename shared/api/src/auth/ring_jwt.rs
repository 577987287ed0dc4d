//! The signature check of `jsonwebtoken`, done with `ring` (already linked for the object store):
//! RS256 and ES256 verification only. `jsonwebtoken`'s own backends would add a second crypto
//! stack (RustCrypto) or change `aws-lc-rs`'s features and rebuild DataFusion; this provider adds
//! neither. Signing and every other algorithm are refused, so no code path can accept HS*, `none`
//! or PS*/EdDSA even if a validation were misconfigured.

use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature::{self as sig, RsaPublicKeyComponents, UnparsedPublicKey};

/// The provider installed by [`install`].
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: no_signer,
    verifier_factory: verifier,
    jwk_utils: JwkUtils::new_unimplemented(),
};

/// Makes this provider `jsonwebtoken`'s process default (idempotent).
pub fn install() {
    // Err means a provider is already installed: ours (a second verifier) — nothing else installs one.
    let _ = PROVIDER.install_default();
}

fn no_signer(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    Err(ErrorKind::Provider("the API verifies tokens, it never signs".into()).into())
}

fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    match (alg, key.kind()) {
        (Algorithm::RS256, DecodingKeyKind::RsaModulusExponent { n, e }) => Ok(Box::new(Rs256 {
            n: n.clone(),
            e: e.clone(),
        })),
        (Algorithm::ES256, DecodingKeyKind::SecretOrDer(point))
            if key.family() == jsonwebtoken::AlgorithmFamily::Ec =>
        {
            Ok(Box::new(Es256 {
                point: point.clone(),
            }))
        }
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

/// RSASSA-PKCS1-v1_5 with SHA-256 over a 2048–8192-bit modulus.
struct Rs256 {
    n: Vec<u8>,
    e: Vec<u8>,
}

impl signature::Verifier<Vec<u8>> for Rs256 {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        RsaPublicKeyComponents {
            n: &self.n,
            e: &self.e,
        }
        .verify(&sig::RSA_PKCS1_2048_8192_SHA256, msg, signature)
        .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Rs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

/// ECDSA P-256 with SHA-256, JOSE's fixed-width `r || s` signature.
struct Es256 {
    /// Uncompressed point `04 || x || y`.
    point: Vec<u8>,
}

impl signature::Verifier<Vec<u8>> for Es256 {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, &self.point)
            .verify(msg, signature)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Es256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}
