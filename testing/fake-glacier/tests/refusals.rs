//! The fake refuses what Glacier refuses: each rule checked with a bad request sent as raw
//! HTTP (the SDK would not send most of these).

use std::io::{Read, Write};
use std::net::TcpStream;

use fake_glacier::FakeGlacier;
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;

/// A status code and body.
struct Reply {
    status: u16,
    headers: String,
    body: String,
}

/// Sends one HTTP/1.1 request to the fake and reads the whole reply.
fn send(
    fake: &FakeGlacier,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> Reply {
    let address = fake.endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\ncontent-length: {}\r\n", body.len()).into_bytes();
    for (name, value) in headers {
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body);
    stream.write_all(&request).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    let text = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The tree hash, computed here the simplest way (for parts of at most 2 MiB, the inputs used).
fn tree_hex(data: &[u8]) -> String {
    let chunks: Vec<[u8; 32]> = data.chunks(MIB).map(|c| Sha256::digest(c).into()).collect();
    match chunks.as_slice() {
        [one] => hex::encode(one),
        [a, b] => hex::encode(Sha256::digest([&a[..], &b[..]].concat())),
        _ => panic!("only one or two chunks here"),
    }
}

fn start_upload(fake: &FakeGlacier, part_size: usize) -> String {
    let size = part_size.to_string();
    let reply = send(
        fake,
        "POST",
        "/-/vaults/v/multipart-uploads",
        &[
            ("x-amz-part-size", size.as_bytes()),
            ("x-amz-archive-description", b"ok"),
        ],
        b"",
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let line = reply
        .headers
        .lines()
        .find(|l| l.starts_with("x-amz-multipart-upload-id:"))
        .unwrap()
        .to_owned();
    line.split_once(':').unwrap().1.trim().to_owned()
}

fn put_part(fake: &FakeGlacier, upload: &str, start: usize, data: &[u8]) -> Reply {
    let range = format!("bytes {start}-{}/*", start + data.len() - 1);
    send(
        fake,
        "PUT",
        &format!("/-/vaults/v/multipart-uploads/{upload}"),
        &[
            ("content-range", range.as_bytes()),
            ("x-amz-sha256-tree-hash", tree_hex(data).as_bytes()),
            ("x-amz-content-sha256", sha256_hex(data).as_bytes()),
        ],
        data,
    )
}

fn complete(fake: &FakeGlacier, upload: &str, size: usize, tree: &str) -> Reply {
    let size = size.to_string();
    send(
        fake,
        "POST",
        &format!("/-/vaults/v/multipart-uploads/{upload}"),
        &[
            ("x-amz-archive-size", size.as_bytes()),
            ("x-amz-sha256-tree-hash", tree.as_bytes()),
        ],
        b"",
    )
}

/// A fake that takes these unsigned requests: the rules tested here are not about signatures.
fn fake() -> FakeGlacier {
    let fake = FakeGlacier::start();
    fake.create_vault("v");
    fake.set(|b| b.check_signatures = false);
    fake
}

#[test]
fn unsigned_and_wrongly_signed_requests_are_refused() {
    let fake = FakeGlacier::start();
    fake.create_vault("v");
    let reply = send(&fake, "GET", "/-/vaults/v", &[], b"");
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(
        reply.body.contains("MissingAuthenticationTokenException"),
        "{}",
        reply.body
    );
    let forged = b"AWS4-HMAC-SHA256 Credential=testing/20261129/us-east-1/glacier/aws4_request, SignedHeaders=host;x-amz-date, Signature=00";
    let reply = send(
        &fake,
        "GET",
        "/-/vaults/v",
        &[
            ("authorization", forged),
            ("x-amz-date", b"20261129T000000Z"),
        ],
        b"",
    );
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(
        reply.body.contains("InvalidSignatureException"),
        "{}",
        reply.body
    );
    let stranger = b"AWS4-HMAC-SHA256 Credential=AKIDSTRANGER/20261129/us-east-1/glacier/aws4_request, SignedHeaders=host;x-amz-date, Signature=00";
    let reply = send(
        &fake,
        "GET",
        "/-/vaults/v",
        &[
            ("authorization", stranger),
            ("x-amz-date", b"20261129T000000Z"),
        ],
        b"",
    );
    assert!(
        reply.body.contains("UnrecognizedClientException"),
        "{}",
        reply.body
    );
}

#[test]
fn a_body_whose_sha256_is_not_the_one_sent_is_refused() {
    let fake = fake();
    let data = vec![1u8; 1000];
    let reply = send(
        &fake,
        "POST",
        "/-/vaults/v/archives",
        &[
            ("x-amz-sha256-tree-hash", tree_hex(&data).as_bytes()),
            ("x-amz-content-sha256", sha256_hex(b"other").as_bytes()),
        ],
        &data,
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    let reply = send(
        &fake,
        "POST",
        "/-/vaults/v/archives",
        &[("x-amz-sha256-tree-hash", tree_hex(&data).as_bytes())],
        &data,
    );
    assert_eq!(
        reply.status, 400,
        "a missing x-amz-content-sha256 is refused too: {}",
        reply.body
    );
    let reply = send(
        &fake,
        "POST",
        "/-/vaults/v/archives",
        &[
            ("x-amz-sha256-tree-hash", tree_hex(&data).as_bytes()),
            ("x-amz-content-sha256", sha256_hex(&data).as_bytes()),
        ],
        &data,
    );
    assert_eq!(reply.status, 201, "the same request, right: {}", reply.body);
}

#[test]
fn part_sizes_that_are_not_a_power_of_two_mib_are_refused() {
    let fake = fake();
    for size in [
        "0",
        "1000",
        &(3 * MIB).to_string(),
        &(8192usize * MIB).to_string(),
    ] {
        let reply = send(
            &fake,
            "POST",
            "/-/vaults/v/multipart-uploads",
            &[("x-amz-part-size", size.as_bytes())],
            b"",
        );
        assert_eq!(reply.status, 400, "{size}: {}", reply.body);
    }
    assert_eq!(fake.uploads_in_progress("v"), 0);
}

#[test]
fn descriptions_that_are_not_printable_ascii_or_too_long_are_refused() {
    let fake = fake();
    let long = vec![b'x'; 1025];
    for description in [&b"caf\xc3\xa9"[..], b"tab\there", &long] {
        let reply = send(
            &fake,
            "POST",
            "/-/vaults/v/multipart-uploads",
            &[
                ("x-amz-part-size", b"1048576"),
                ("x-amz-archive-description", description),
            ],
            b"",
        );
        assert_eq!(reply.status, 400, "{description:?}: {}", reply.body);
    }
    assert_eq!(fake.uploads_in_progress("v"), 0);
}

#[test]
fn parts_off_the_part_grid_or_past_10000_are_refused() {
    let fake = fake();
    let upload = start_upload(&fake, MIB);
    let data = vec![2u8; MIB];
    assert_eq!(
        put_part(&fake, &upload, 1000, &data).status,
        400,
        "misaligned start"
    );
    assert_eq!(
        put_part(&fake, &upload, 0, &vec![2u8; MIB + 1]).status,
        400,
        "longer than a part"
    );
    assert_eq!(
        put_part(&fake, &upload, 10_000 * MIB, &data).status,
        400,
        "part 10,001"
    );
    assert_eq!(
        put_part(&fake, &upload, 9_999 * MIB, &data).status,
        204,
        "part 10,000"
    );
    let mut wrong = put_part(&fake, &upload, 0, &data);
    assert_eq!(wrong.status, 204);
    // A tree hash that is not the body's.
    let range = format!("bytes 0-{}/*", MIB - 1);
    wrong = send(
        &fake,
        "PUT",
        &format!("/-/vaults/v/multipart-uploads/{upload}"),
        &[
            ("content-range", range.as_bytes()),
            ("x-amz-sha256-tree-hash", tree_hex(b"other").as_bytes()),
            ("x-amz-content-sha256", sha256_hex(&data).as_bytes()),
        ],
        &data,
    );
    assert_eq!(wrong.status, 400, "{}", wrong.body);
}

#[test]
fn completing_checks_parts_size_and_tree_hash() {
    let fake = fake();
    let part = vec![3u8; MIB];
    let whole_tree = |parts: &[&[u8]]| {
        let hashes: Vec<[u8; 32]> = parts.iter().map(|p| Sha256::digest(p).into()).collect();
        hex::encode(match hashes.as_slice() {
            [a, b] => Sha256::digest([&a[..], &b[..]].concat()).into(),
            [a] => *a,
            _ => unreachable!(),
        })
    };

    let empty = start_upload(&fake, MIB);
    let reply = complete(&fake, &empty, 0, &sha256_hex(b""));
    assert_eq!(reply.status, 400, "no parts: {}", reply.body);

    let short_middle = start_upload(&fake, MIB);
    assert_eq!(put_part(&fake, &short_middle, 0, &part[..1000]).status, 204);
    assert_eq!(put_part(&fake, &short_middle, MIB, &part).status, 204);
    let reply = complete(
        &fake,
        &short_middle,
        MIB + 1000,
        &whole_tree(&[&part[..1000], &part]),
    );
    assert_eq!(reply.status, 400, "short middle part: {}", reply.body);

    let missing = start_upload(&fake, MIB);
    assert_eq!(put_part(&fake, &missing, 0, &part).status, 204);
    assert_eq!(put_part(&fake, &missing, 2 * MIB, &part).status, 204);
    let reply = complete(&fake, &missing, 3 * MIB, &whole_tree(&[&part, &part]));
    assert_eq!(reply.status, 400, "missing part: {}", reply.body);

    let good = start_upload(&fake, MIB);
    assert_eq!(put_part(&fake, &good, 0, &part).status, 204);
    assert_eq!(put_part(&fake, &good, MIB, &part[..10]).status, 204);
    let right = whole_tree(&[&part, &part[..10]]);
    assert_eq!(
        complete(&fake, &good, MIB + 10, &sha256_hex(b"wrong")).status,
        400,
        "wrong tree hash"
    );
    assert_eq!(
        complete(&fake, &good, MIB + 11, &right).status,
        400,
        "wrong size"
    );
    let done = complete(&fake, &good, MIB + 10, &right);
    assert_eq!(done.status, 201, "{}", done.body);
    // Repeated, Complete answers with the same archive; with other values it refuses.
    let again = complete(&fake, &good, MIB + 10, &right);
    assert_eq!(again.status, 201);
    let location = |r: &Reply| {
        r.headers
            .lines()
            .find(|l| l.starts_with("location:"))
            .map(str::to_owned)
    };
    assert_eq!(location(&again), location(&done));
    assert_eq!(
        complete(&fake, &good, MIB + 10, &sha256_hex(b"x")).status,
        400
    );
    assert_eq!(fake.archives("v").len(), 1);
}

#[test]
fn job_output_carries_a_tree_hash_only_for_tree_hash_aligned_ranges() {
    let fake = fake();
    let data: Vec<u8> = (0..4 * MIB + 100).map(|i| (i % 251) as u8).collect();
    let upload = start_upload(&fake, MIB);
    for start in (0..data.len()).step_by(MIB) {
        let end = (start + MIB).min(data.len());
        assert_eq!(
            put_part(&fake, &upload, start, &data[start..end]).status,
            204
        );
    }
    let tree = hex::encode(TreeHashForTest::of(&data));
    let done = complete(&fake, &upload, data.len(), &tree);
    assert_eq!(done.status, 201, "{}", done.body);
    let archive = fake.archives("v")[0].0.clone();
    let job = send(
        &fake,
        "POST",
        "/-/vaults/v/jobs",
        &[],
        format!("{{\"Type\": \"archive-retrieval\", \"ArchiveId\": \"{archive}\"}}").as_bytes(),
    );
    assert_eq!(job.status, 202, "{}", job.body);
    let job_id = job
        .headers
        .lines()
        .find(|l| l.starts_with("x-amz-job-id:"))
        .unwrap()
        .split_once(':')
        .unwrap()
        .1
        .trim()
        .to_owned();
    let output = |range: &str| {
        let range = format!("bytes={range}");
        send(
            &fake,
            "GET",
            &format!("/-/vaults/v/jobs/{job_id}/output"),
            &[("range", range.as_bytes())],
            b"",
        )
    };
    let aligned = |r: &Reply| r.headers.contains("x-amz-sha256-tree-hash:");
    let m = MIB;
    for (range, expect) in [
        (format!("0-{}", m - 1), true),
        (format!("0-{}", 2 * m - 1), true),
        (format!("{}-{}", 2 * m, 4 * m - 1), true),
        (format!("{}-{}", 4 * m, 4 * m + 99), true),
        (format!("{}-{}", m, 3 * m - 1), false),
        (format!("0-{}", 3 * m - 1), false),
        (format!("{}-{}", 2 * m, 4 * m + 99), false),
        (format!("10-{}", m - 1), false),
    ] {
        let reply = output(&range);
        assert_eq!(reply.status, 206, "{range}: {}", reply.body);
        assert_eq!(aligned(&reply), expect, "{range}");
    }
}

/// `RetrievalByteRange` is taken as Glacier takes it: START on a MiB, END + 1 on a MiB or the
/// archive's end; the job retrieves only that range, and its output (and description) carry
/// the range's tree hash only when the range is tree-hash aligned.
#[test]
fn ranged_retrievals_must_be_mib_aligned_and_hash_only_when_tree_hash_aligned() {
    let fake = fake();
    let data: Vec<u8> = (0..4 * MIB + 100).map(|i| (i % 241) as u8).collect();
    let archive = fake.plant("v", "ranged", &data);
    let start_job = |range: &str| {
        send(
            &fake,
            "POST",
            "/-/vaults/v/jobs",
            &[],
            format!(
                "{{\"Type\": \"archive-retrieval\", \"ArchiveId\": \"{archive}\", \
                 \"RetrievalByteRange\": \"{range}\"}}"
            )
            .as_bytes(),
        )
    };
    let m = MIB;
    for refused in [
        format!("10-{}", m - 1),
        format!("0-{}", m),
        format!("{}-{}", m, m - 1),
        format!("0-{}", data.len()),
        "a-b".to_owned(),
    ] {
        let reply = start_job(&refused);
        assert_eq!(reply.status, 400, "{refused}: {}", reply.body);
        assert!(reply.body.contains("megabyte aligned"), "{}", reply.body);
    }
    assert_eq!(fake.stats().retrievals_started, 0);
    for (range, slice, hashed) in [
        (format!("{}-{}", 2 * m, 4 * m - 1), 2 * m..4 * m, true),
        (format!("{}-{}", m, 3 * m - 1), m..3 * m, false),
        (
            format!("{}-{}", 4 * m, data.len() - 1),
            4 * m..data.len(),
            true,
        ),
    ] {
        let job = start_job(&range);
        assert_eq!(job.status, 202, "{range}: {}", job.body);
        let job_id = job
            .headers
            .lines()
            .find_map(|l| l.strip_prefix("x-amz-job-id:"))
            .unwrap()
            .trim()
            .to_owned();
        let output = send(
            &fake,
            "GET",
            &format!("/-/vaults/v/jobs/{job_id}/output"),
            &[],
            b"",
        );
        assert_eq!(output.status, 200);
        let length = format!("content-length: {}", slice.len());
        assert!(
            output.headers.contains(&length),
            "{range}: {}",
            output.headers
        );
        let tree_hash = format!("x-amz-sha256-tree-hash: {}", tree_hex(&data[slice]));
        assert_eq!(output.headers.contains(&tree_hash), hashed, "{range}");
        let described = send(
            &fake,
            "GET",
            &format!("/-/vaults/v/jobs/{job_id}"),
            &[],
            b"",
        );
        assert!(
            described
                .body
                .contains(&format!("\"RetrievalByteRange\":\"{range}\"")),
            "{}",
            described.body
        );
    }
    let asked: Vec<_> = fake.stats().retrieval_ranges;
    assert_eq!(asked.len(), 3);
    assert_eq!(asked[0], Some((2 * m as u64, 4 * m as u64)));
}

/// An independent whole-archive tree hash for the test above (more than two chunks).
struct TreeHashForTest;

impl TreeHashForTest {
    fn of(data: &[u8]) -> [u8; 32] {
        let mut level: Vec<[u8; 32]> = data.chunks(MIB).map(|c| Sha256::digest(c).into()).collect();
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|p| {
                    if p.len() == 2 {
                        Sha256::digest([&p[0][..], &p[1][..]].concat()).into()
                    } else {
                        p[0]
                    }
                })
                .collect();
        }
        level[0]
    }
}

#[test]
fn deleting_an_archive_removes_it_once_and_an_unknown_one_is_not_found() {
    let fake = fake();
    let id = fake.plant("v", "scans.zip", b"scanned");
    let path = format!("/-/vaults/v/archives/{id}");
    assert_eq!(send(&fake, "DELETE", &path, &[], b"").status, 204);
    assert!(fake.archives("v").is_empty());
    let again = send(&fake, "DELETE", &path, &[], b"");
    assert_eq!(again.status, 404, "{}", again.body);
    assert!(
        again.body.contains("ResourceNotFoundException"),
        "{}",
        again.body
    );
}
