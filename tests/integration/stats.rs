//! `stats` against a planted ledger: every figure computed here from the price table (S3
//! DEEP_ARCHIVE: $0.00099 per GB-month, 32 KiB of index per object at that rate and 8 KiB at
//! STANDARD's $0.023, 180 days at least), the JSON and the text saying the same.

use crate::support::config::TestConfig;
use crate::support::sandbox::{output_text, Sandbox};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const DAY: i64 = 86_400;
const NOW: i64 = 1_900_000_000;

fn at(seconds: i64) -> String {
    glacier_backup::display_time(time::OffsetDateTime::from_unix_timestamp(seconds).unwrap())
}

/// A ledger with these rows (path, archive id, size, age in days), made by a real run first so
/// its schema is the binary's.
fn planted(sb: &Sandbox, ledger: &std::path::Path, rows: &[(&str, &str, u64, i64)]) {
    let seed = sb.path("seed.txt");
    std::fs::write(&seed, b"seed").unwrap();
    let local = TestConfig::local(&sb.path("archives"))
        .main("ledger", ledger.display())
        .raw(&format!("[\"{}\"]\n", seed.display()))
        .write(&sb.path("local.toml"));
    assert_eq!(sb.outcome(&local, &[]).0, Some(0));
    let db = rusqlite::Connection::open(ledger).unwrap();
    db.execute("DELETE FROM uploads", []).unwrap();
    for (path, id, size, age) in rows {
        let stored = NOW - age * DAY;
        db.execute(
            "INSERT INTO uploads (path, name, archive_id, uploaded_date, backend, size, \
             started_at, uploaded_at) VALUES (?1, 'n', ?2, ?3, 's3', ?4, ?5, ?5)",
            rusqlite::params![path, id, stored, *size as i64, at(stored)],
        )
        .unwrap();
    }
}

#[test]
fn stats_prices_what_the_ledger_holds() {
    let sb = Sandbox::new();
    let ledger = sb.path("planted.sqlite3");
    let rows = [
        ("/data/photos", "p1", 10 * GIB, 400),
        ("/data/photos", "p2", 5 * GIB, 100),
        ("/data/photos", "p3", GIB, 10),
        ("/data/docs", "d1", 100 * MIB, 200),
        ("/data/docs", "d2", 200 * MIB, 1),
        ("/data/old", "o1", 50 * MIB, 500),
        ("/data/gone", "g1", 70 * MIB, 300),
    ];
    planted(&sb, &ledger, &rows);
    let db = rusqlite::Connection::open(&ledger).unwrap();
    // Pruned, moved and deleted here, moved and kept, and what is pending.
    let when = at(NOW - DAY);
    for sql in [
        "INSERT INTO pruned (archive_id, started_at, deleted_at) VALUES ('o1', ?1, ?1)",
        "INSERT INTO moved (archive_id, destination, key, moved_at, source_deleted_at) \
         VALUES ('g1', 'azure.x.y', 'k', ?1, ?1)",
        "INSERT INTO moved (archive_id, destination, key, moved_at, source_deleted_at) \
         VALUES ('d1', 'azure.x.y', 'k2', ?1, NULL)",
        "INSERT INTO retrievals (archive_id, request_id, tier, requested_at) \
         VALUES ('p1', 'job1', 'standard', ?1)",
        "INSERT INTO retrievals (archive_id, request_id, tier, requested_at) \
         VALUES ('p2', 'job2', 'bulk', ?1)",
        "INSERT INTO retrievals (archive_id, request_id, tier, requested_at) \
         VALUES ('', 'inventory', 'standard', ?1)",
        "INSERT INTO pending_uploads (path, backend, token, part_size, fingerprint, started_at) \
         VALUES ('/data/new', 's3', 't', 8388608, 'f', ?1)",
    ] {
        db.execute(sql, [&when]).unwrap();
    }
    let config = TestConfig::bucket("http://127.0.0.1:9", "cold")
        .backend("storage_class", "DEEP_ARCHIVE")
        .main("ledger", ledger.display())
        .write(&sb.path("s3.toml"));
    let run = |args: &[&str]| {
        let out = sb
            .with_config(&config, args)
            .env("GLACIER_BACKUP_NOW", NOW.to_string())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
        out
    };

    // What the price table says, computed here.
    let here = [
        (10 * GIB, 400),
        (5 * GIB, 100),
        (GIB, 10),
        (100 * MIB, 200),
        (200 * MIB, 1),
    ];
    let gb = |bytes: u64| bytes as f64 / GIB as f64;
    let bytes: u64 = here.iter().map(|(s, _)| s).sum();
    let monthly: f64 = here
        .iter()
        .map(|(s, _)| gb(s + 32 * 1024) * 0.00099 + gb(8 * 1024) * 0.023)
        .sum();
    let young: Vec<_> = here.iter().filter(|(_, age)| *age < 180).collect();
    let early: f64 = young
        .iter()
        .map(|(s, age)| gb(s + 32 * 1024) * 0.00099 * (180 - age) as f64 / 30.0)
        .sum();

    let json: serde_json::Value =
        serde_json::from_slice(&run(&["--json", "stats"]).stdout).unwrap();
    let close = |key: &str, want: f64| {
        let got = json[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key}: {json}"));
        assert!((got - want).abs() < 1e-9, "{key}: {got} vs {want}");
    };
    assert_eq!(json["storage_class"], "DEEP_ARCHIVE");
    assert_eq!(json["archives"], 5);
    assert_eq!(json["bytes"], bytes);
    close("monthly_usd", monthly);
    assert_eq!(json["young_archives"], 3);
    assert_eq!(
        json["young_bytes"],
        young.iter().map(|(s, _)| s).sum::<u64>()
    );
    close("early_deletion_usd", early);
    assert_eq!(json["minimum_days"], 180);
    assert_eq!(json["largest_paths"][0]["path"], "/data/photos");
    assert_eq!(json["largest_paths"][0]["bytes"], 16 * GIB);
    assert_eq!(json["largest_paths"][0]["archives"], 3);
    assert_eq!(json["largest_paths"][1]["path"], "/data/docs");
    assert_eq!(json["largest_paths"][1]["bytes"], 300 * MIB);
    assert_eq!(json["largest_paths"].as_array().unwrap().len(), 2);
    assert_eq!(json["oldest"], at(NOW - 400 * DAY));
    assert_eq!(json["newest"], at(NOW - DAY));
    assert_eq!(json["pending_retrievals"], 2);
    assert_eq!(json["pending_inventory"], true);
    assert_eq!(json["pending_uploads"], 1);
    assert_eq!(
        (json["moved"].clone(), json["moved_and_deleted"].clone()),
        (2.into(), 1.into())
    );
    assert_eq!(json["pruned"], 1);

    // The text says the same figures.
    let text = output_text(&run(&["stats"]));
    for said in [
        format!("(DEEP_ARCHIVE): 5 archive(s), 16.3 GiB ({bytes} bytes)"),
        format!(
            "storage: about {} a month",
            glacier_backup::costs::dollars(monthly)
        ),
        format!(
            "inside their 180-day minimum: 3 archive(s), 6.2 GiB; deleting them now would cost {}",
            glacier_backup::costs::dollars(early)
        ),
        format!(
            "oldest upload {}, newest {}",
            at(NOW - 400 * DAY),
            at(NOW - DAY)
        ),
        "pending: 2 retrieval(s), an inventory, 1 interrupted upload(s)".into(),
        "moved to another destination: 2 (1 deleted here); pruned: 1".into(),
    ] {
        assert!(text.contains(&said), "{said:?} missing from:\n{text}");
    }
    assert!(
        text.contains("/data/photos") && text.contains("/data/docs"),
        "{text}"
    );
}

/// Without a ledger there is nothing stored: stats says so and succeeds.
#[test]
fn stats_of_a_destination_never_used_is_empty() {
    let sb = Sandbox::new();
    let config = TestConfig::bucket("http://127.0.0.1:9", "cold")
        .main("ledger", sb.path("none.sqlite3").display())
        .write(&sb.path("s3.toml"));
    let (code, out) = sb.outcome(&config, &["stats"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("0 archive(s), 0 B"), "{out}");
}
