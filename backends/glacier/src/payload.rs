//! Uploads carry the hashes we computed, so the SDK does not hash every body twice more.
//!
//! aws-sdk-glacier's tree-hash interceptor loads each upload's body and always computes its
//! tree hash and SHA-256, even when the tree hash is given (it only leaves headers that are
//! already set alone): on a 2-core machine that was 40% of a backup's CPU. We know each part's
//! tree hash already and compute its SHA-256 once; these interceptors hand that to the request
//! as the signed payload hash and give the SDK's interceptor an empty body to hash instead.
//! Just before each attempt is sent, the request is checked to carry our SHA-256 both as the
//! header and as the signed payload hash, so an SDK change that undid this fails the upload
//! instead of sending a request signed over the wrong hash.

use aws_runtime::auth::SigV4OperationSigningConfig;
use aws_sigv4::http_request::SignableBody;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextMut, BeforeTransmitInterceptorContextMut,
    BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::LoadedRequestBody;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use sha2::{Digest, Sha256};

const CONTENT_SHA256: &str = "x-amz-content-sha256";

/// Marks an operation whose payload hash we supply.
#[derive(Debug, Clone)]
struct OwnPayloadHash;

impl Storable for OwnPayloadHash {
    type Storer = StoreReplace<Self>;
}

/// The linear SHA-256 of an upload body, hex: what Glacier wants in `x-amz-content-sha256`.
pub fn payload_sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Registered on the client, so it runs before the operation's own interceptors: for an
/// upload that carries our hashes, the body the SDK would hash is replaced by an empty one.
/// (What is sent is the request's own body, which this does not touch.)
#[derive(Debug, Default)]
pub struct SkipSdkBodyHashing;

impl Intercept for SkipSdkBodyHashing {
    fn name(&self) -> &'static str {
        "SkipSdkBodyHashing"
    }

    fn modify_before_retry_loop(
        &self,
        _context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg.load::<OwnPayloadHash>().is_some() {
            cfg.interceptor_state()
                .store_put(LoadedRequestBody::Loaded(bytes::Bytes::new()));
        }
        Ok(())
    }
}

/// Added to one upload request (so it runs after the SDK's interceptors): sets our SHA-256 as
/// the payload hash header and as what SigV4 signs, and checks both before sending.
#[derive(Debug)]
pub struct OwnPayloadSha256 {
    sha256: String,
}

impl OwnPayloadSha256 {
    /// For a body whose SHA-256 is `sha256` (from [`payload_sha256`]).
    pub fn new(sha256: String) -> Self {
        OwnPayloadSha256 { sha256 }
    }
}

impl Intercept for OwnPayloadSha256 {
    fn name(&self) -> &'static str {
        "OwnPayloadSha256"
    }

    fn modify_before_serialization(
        &self,
        _context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state().store_put(OwnPayloadHash);
        Ok(())
    }

    fn modify_before_retry_loop(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        context
            .request_mut()
            .headers_mut()
            .insert(CONTENT_SHA256, self.sha256.clone());
        let mut signing = cfg
            .load::<SigV4OperationSigningConfig>()
            .ok_or("no SigV4 signing configuration for a Glacier upload")?
            .clone();
        signing.signing_options.payload_override =
            Some(SignableBody::Precomputed(self.sha256.clone()));
        cfg.interceptor_state().store_put(signing);
        Ok(())
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let header = context.request().headers().get(CONTENT_SHA256);
        let signed = cfg
            .load::<SigV4OperationSigningConfig>()
            .and_then(|c| c.signing_options.payload_override.as_ref());
        let signed_ours = matches!(signed, Some(SignableBody::Precomputed(h)) if *h == self.sha256);
        if header != Some(self.sha256.as_str()) || !signed_ours {
            return Err(
                "internal error: the upload would not be signed over its SHA-256 \
                        (has aws-sdk-glacier changed how it hashes uploads?)"
                    .into(),
            );
        }
        Ok(())
    }
}
