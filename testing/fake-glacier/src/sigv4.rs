//! Checks each request's AWS Signature Version 4 as AWS does, with the one test credential,
//! so a client that signs over the wrong payload hash (or anything else wrong) is refused with
//! `InvalidSignatureException` here, as it would be by Glacier.
//!
//! Written from AWS's description of the algorithm, not from the SDK's signer.

use hmac::{Hmac, KeyInit, Mac};
use hyper::header::HeaderMap;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

/// The access key id tests and benchmarks sign with.
pub const ACCESS_KEY: &str = "testing";
/// Its secret.
pub const SECRET_KEY: &str = "testing";

/// Characters SigV4 leaves as they are: RFC 3986's unreserved set.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn encode(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<sha2_hmac::Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Why a request's signature is refused: (error code, message).
pub type Refusal = (&'static str, String);

/// Checks the `Authorization` header of a request whose body hashes to `payload_sha256`.
pub fn verify(
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    payload_sha256: &str,
) -> Result<(), Refusal> {
    let invalid = |message: String| ("InvalidSignatureException", message);
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or((
            "MissingAuthenticationTokenException",
            "no Authorization header".to_owned(),
        ))?;
    let fields = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| invalid("not AWS4-HMAC-SHA256".into()))?;
    let field = |name: &str| {
        fields
            .split(',')
            .map(str::trim)
            .find_map(|f| f.strip_prefix(name))
            .ok_or_else(|| invalid(format!("no {name} in Authorization")))
    };
    let credential = field("Credential=")?;
    let signed_headers = field("SignedHeaders=")?;
    let signature = field("Signature=")?;
    let (access_key, scope) = credential
        .split_once('/')
        .ok_or_else(|| invalid("malformed Credential".into()))?;
    if access_key != ACCESS_KEY {
        return Err((
            "UnrecognizedClientException",
            format!("the security token {access_key:?} is not valid"),
        ));
    }
    let scope_parts: Vec<&str> = scope.split('/').collect();
    let [date, region, service, "aws4_request"] = scope_parts[..] else {
        return Err(invalid(format!("malformed credential scope {scope:?}")));
    };
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| invalid("no x-amz-date header".into()))?;
    if !amz_date.starts_with(date) {
        return Err(invalid("x-amz-date is not the credential's date".into()));
    }

    // Each path segment encoded once more than it was sent (AWS's rule for every service but S3).
    let canonical_uri = raw_path
        .split('/')
        .map(encode)
        .collect::<Vec<_>>()
        .join("/");
    let canonical_query = canonical_query(raw_query);
    let canonical_headers = canonical_headers(signed_headers, headers).map_err(invalid)?;
    let canonical_request = format!(
        "{method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_sha256}"
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{SECRET_KEY}").as_bytes(), date);
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part);
    }
    let expected = hex::encode(hmac(&key, &string_to_sign));
    if expected != signature {
        // As AWS answers: the request it expected, quoted, headers (a session token among
        // them) included.
        return Err(invalid(format!(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. Consult the service \
             documentation for details.\n\nThe Canonical String for this request should have \
             been\n'{canonical_request}'\n\nThe String-to-Sign should have been\n'{string_to_sign}'\n"
        )));
    }
    Ok(())
}

/// The query's pairs, each decoded and encoded again AWS's way, sorted.
fn canonical_query(raw_query: &str) -> String {
    let mut query: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            (encode(&decode(key)), encode(&decode(value)))
        })
        .collect();
    query.sort();
    query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `name:values` lines of the signed headers, whitespace runs folded; a missing one refused.
fn canonical_headers(signed_headers: &str, headers: &HeaderMap) -> Result<String, String> {
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        if values.is_empty() {
            return Err(format!("signed header {name} is missing"));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    Ok(canonical_headers)
}
