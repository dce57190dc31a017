use std::path::{Path, PathBuf};

use super::*;

fn ini(text: &str) -> Result<Config, ConfigError> {
    parse(text, Some(Path::new("/etc/gb.conf")), Format::Ini)
}

fn toml(text: &str) -> Result<Config, ConfigError> {
    parse(text, Some(Path::new("/etc/gb.toml")), Format::Toml)
}

const PYTHON_TOOL_EXAMPLE: &str = "[main]
account_id='-'
vault_name='myvault'
logfile='/path/to/logfile.log'

[/path/one]
upload_files=true

[/path/two]
upload_dirs=true
upload_if_changed=true
exclude='exclude_'

[/path/three]
upload_single_dir=true
";

#[test]
fn the_python_tool_example_loads_unchanged() {
    let config = ini(PYTHON_TOOL_EXAMPLE).unwrap();
    assert_eq!(config.account_id.as_deref(), Some("-"));
    assert_eq!(config.vault_name.as_deref(), Some("myvault"));
    assert_eq!(config.logfile, LogFile::Path("/path/to/logfile.log".into()));
    assert_eq!(config.backend, "glacier");
    let paths: Vec<_> = config.paths.iter().map(|p| p.path.clone()).collect();
    assert_eq!(
        paths,
        ["/path/one", "/path/two", "/path/three"].map(PathBuf::from)
    );
    assert!(config.paths[0].upload_files && !config.paths[0].upload_dirs);
    assert!(config.paths[1].upload_dirs && config.paths[1].upload_if_changed);
    assert_eq!(config.paths[1].exclude.as_deref(), Some("exclude_"));
    assert!(config.paths[2].upload_single_dir);
}

#[test]
fn the_python_tool_example_is_sniffed_as_ini() {
    assert_eq!(
        format_of(Path::new("x.conf"), PYTHON_TOOL_EXAMPLE),
        Format::Ini
    );
    assert_eq!(
        format_of(
            Path::new("x.conf"),
            "[main]\nbackend = \"local\"\n[\"/a\"]\nupload_files = true\n"
        ),
        Format::Toml
    );
}

#[test]
fn the_same_config_in_toml_means_the_same() {
    let config = toml(
        r#"
[main]
account_id = "-"
vault_name = "myvault"
logfile = "/path/to/logfile.log"

["/path/one"]
upload_files = true

["/path/two"]
upload_dirs = true
upload_if_changed = true
exclude = "exclude_"

["/path/three"]
upload_single_dir = true
"#,
    )
    .unwrap();
    let python_tool = ini(PYTHON_TOOL_EXAMPLE).unwrap();
    assert_eq!(config.paths.len(), 3);
    for rule in &python_tool.paths {
        assert!(
            config.paths.contains(rule),
            "{rule:?} missing from the TOML form"
        );
    }
    assert_eq!(config.vault_name, python_tool.vault_name);
    assert_eq!(config.logfile, python_tool.logfile);
}

#[test]
fn configparser_booleans_and_aliases() {
    let config = ini(
        "[/a]\nUpload_Files = YES\nupload_dirs: on\nexclude_prefix = tmp\nupload_if_changed=0\n",
    )
    .unwrap();
    let rule = &config.paths[0];
    assert!(rule.upload_files && rule.upload_dirs && !rule.upload_if_changed);
    assert_eq!(rule.exclude.as_deref(), Some("tmp"));
}

#[test]
fn empty_logfile_disables_and_trailing_slash_is_dropped() {
    let config = ini("[main]\nlogfile=''\n[/data/]\n").unwrap();
    assert_eq!(config.logfile, LogFile::Disabled);
    assert_eq!(config.paths[0].path, PathBuf::from("/data"));
}

fn error_text(result: Result<Config, ConfigError>) -> String {
    result.expect_err("config should be rejected").to_string()
}

#[test]
fn bad_configs_say_where_and_what() {
    let cases: &[(&str, &[&str])] = &[
        (
            "[/a]\nupload_files = maybe\n",
            &["/etc/gb.conf:2", "upload_files", "not a boolean"],
        ),
        (
            "[relative/path]\nupload_files = 1\n",
            &["[relative/path]", "absolute"],
        ),
        ("[mian]\nvault_name = v\n", &["did you mean [main]"]),
        (
            "[/a]\nupload_file = true\n",
            &["/etc/gb.conf:2", "did you mean \"upload_files\""],
        ),
        ("[/a]\n[/a]\n", &["/etc/gb.conf:2", "more than once"]),
        (
            "[/a]\nupload_files=1\nupload_files=0\n",
            &["/etc/gb.conf:3", "more than once"],
        ),
        (
            "vault_name = v\n[/a]\n",
            &["/etc/gb.conf:1", "outside any section"],
        ),
        (
            "[main]\nbackend = tape\n",
            &["backend", "choose one of local, glacier, s3"],
        ),
        ("[/a]\nexclude=x\nexclude_prefix=y\n", &["keep one"]),
        ("[/a]\n[/a/]\n", &["same path"]),
        ("# only a comment\n", &["empty"]),
        ("[/a\n", &["/etc/gb.conf:1"]),
    ];
    for (text, needles) in cases {
        let message = error_text(ini(text));
        for needle in *needles {
            assert!(
                message.contains(needle),
                "{text:?}: {message:?} lacks {needle:?}"
            );
        }
    }
}

#[test]
fn bad_toml_says_where_and_what() {
    let cases: &[(&str, &[&str])] = &[
        (
            "[main]\nbackend = \"local\"\nbackend = \"s3\"\n",
            &["/etc/gb.toml:3"],
        ),
        ("[main]\nvault = \"x\"\n", &["did you mean \"vault_name\""]),
        (
            "[\"/a\"]\nupload_files = \"perhaps\"\n",
            &["upload_files", "not a boolean"],
        ),
        (
            "[\"/a\"]\nupload_files = 1.5\n",
            &["upload_files", "decimal"],
        ),
        ("backend = \"local\"\n", &["outside any section"]),
        ("", &["empty"]),
    ];
    for (text, needles) in cases {
        let message = error_text(toml(text));
        for needle in *needles {
            assert!(
                message.contains(needle),
                "{text:?}: {message:?} lacks {needle:?}"
            );
        }
    }
}

#[test]
fn non_utf8_files_are_rejected_with_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.conf");
    std::fs::write(&path, b"[main]\nvault_name = caf\xe9\n").unwrap();
    let message = load(&path).unwrap_err().to_string();
    assert!(
        message.contains("bad.conf:2") && message.contains("UTF-8"),
        "{message}"
    );
    let missing = dir.path().join("missing.conf");
    assert!(matches!(load(&missing), Err(ConfigError::NotFound(_))));
}

#[test]
fn parallel_uploads_defaults_and_must_be_a_sane_count() {
    assert_eq!(
        ini("[main]\nvault_name=v\n").unwrap().parallel_uploads,
        super::DEFAULT_PARALLEL_UPLOADS
    );
    assert_eq!(
        toml("[main]\nparallel_uploads = 3\n")
            .unwrap()
            .parallel_uploads,
        3
    );
    for bad in ["0", "65", "many"] {
        let message = error_text(ini(&format!("[main]\nparallel_uploads={bad}\n")));
        assert!(
            message.contains("/etc/gb.conf") && message.contains("parallel_uploads"),
            "{message}"
        );
    }
}
