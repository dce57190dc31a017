//! HTTP replies in Glacier's shapes: success, JSON, errors, injected faults.

use super::*;

pub(crate) fn respond(status: StatusCode, headers: &[(&str, String)], body: Bytes) -> Reply {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    Ok(builder.body(Full::new(body)).expect("valid response"))
}

pub(crate) fn json(status: StatusCode, value: serde_json::Value) -> Reply {
    respond(
        status,
        &[("content-type", "application/json".into())],
        Bytes::from(value.to_string()),
    )
}

pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Reply {
    let body = serde_json::json!({"code": code, "message": message, "type": "Client"});
    respond(
        status,
        &[
            ("content-type", "application/json".into()),
            ("x-amzn-errortype", code.to_owned()),
        ],
        Bytes::from(body.to_string()),
    )
}

pub(crate) fn fault(kind: FaultKind) -> Reply {
    match kind {
        FaultKind::Unavailable => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceUnavailableException",
            "injected fault",
        ),
        FaultKind::Throttling => error(
            StatusCode::BAD_REQUEST,
            "ThrottlingException",
            "injected fault",
        ),
        FaultKind::DropConnection => Err(std::io::Error::other("injected dropped connection")),
    }
}

pub(crate) fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

pub(crate) fn bad(message: &str) -> Reply {
    error(
        StatusCode::BAD_REQUEST,
        "InvalidParameterValueException",
        message,
    )
}

pub(crate) fn missing(what: &str) -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        &format!("{what} not found"),
    )
}

pub(crate) fn created_archive(vault: &str, id: &str, hash: TreeHash) -> Reply {
    respond(
        StatusCode::CREATED,
        &[
            ("location", format!("/-/vaults/{vault}/archives/{id}")),
            ("x-amz-archive-id", id.to_owned()),
            ("x-amz-sha256-tree-hash", hash.to_hex()),
        ],
        Bytes::new(),
    )
}
