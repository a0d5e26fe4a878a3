//! Building an [`EmberConf`] from the places configuration comes from, in a fixed precedence.
//!
//! Spark counterpart: what `SparkSubmitArguments` / `MasterArguments` / `WorkerArguments` and the
//! `SparkConf` constructor do together: load `spark-defaults.conf` (or `--properties-file`), read
//! `SPARK_*` environment variables and `-Dspark.*` system properties from `SPARK_DAEMON_JAVA_OPTS`
//! and friends, then apply `--conf` and daemon flags. Here one builder does it, lowest precedence
//! first:
//!
//! 1. defaults declared in entries (never copied into the map; applied when a key is read);
//! 2. the properties file: `--properties-file PATH` if given (it must exist), otherwise
//!    `$EMBER_CONF_DIR/ember-defaults.conf`, or `$EMBER_HOME/conf/ember-defaults.conf` when
//!    `EMBER_CONF_DIR` is unset (a missing default file is fine);
//! 3. the environment variables declared by entries (`EMBER_WORKER_CORES` for
//!    `ember.worker.cores`), when set and not empty;
//! 4. `-Dkey=value` tokens in options variables such as `EMBER_DAEMON_OPTS`, in the order the
//!    variables are given (tokens are split at whitespace; there is no quoting);
//! 5. command-line pairs (`--conf key=value`, daemon flags mapped to keys by the caller);
//! 6. code: [`EmberConf::set`] after loading.
//!
//! The environment is an input: tests pass a map instead of touching the process environment.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::EmberConf;
use super::error::{ConfError, redact_pair_text};
use super::properties::read_properties_file;
use super::registry::ConfigEntryDoc;

/// The environment variable naming the configuration directory.
pub const CONF_DIR_ENV: &str = "EMBER_CONF_DIR";
/// The environment variable naming Ember's installation directory (its `conf/` is the default
/// configuration directory).
pub const HOME_ENV: &str = "EMBER_HOME";
/// The name of the defaults file in the configuration directory.
pub const DEFAULTS_FILE_NAME: &str = "ember-defaults.conf";

/// Where environment variables are read from.
#[derive(Clone, Default)]
enum EnvSource {
    #[default]
    Process,
    Map(BTreeMap<String, String>),
}

impl EnvSource {
    fn get(&self, var: &str) -> Option<String> {
        match self {
            EnvSource::Process => std::env::var(var).ok(),
            EnvSource::Map(map) => map.get(var).cloned(),
        }
    }
}

/// Loads an [`EmberConf`] from a properties file, the environment and the command line; see the
/// [module documentation](self) for the precedence.
///
/// ```
/// use ember_rpc::conf::{ConfigEntry, EmberConf};
///
/// const CORES: ConfigEntry<u32> =
///     ConfigEntry::new("ember.worker.cores", None, "Cores to offer.").with_env("EMBER_WORKER_CORES");
///
/// let conf = EmberConf::loader()
///     .entries(&[CORES.describe()])
///     .opts_env_vars(&["EMBER_DAEMON_OPTS"])
///     .env_vars([("EMBER_WORKER_CORES", "4"), ("EMBER_DAEMON_OPTS", "-Dember.a=1 -Dember.b=2")])
///     .cli_pairs([("ember.b".to_owned(), "3".to_owned())])
///     .load()
///     .unwrap();
/// assert_eq!(conf.get(&CORES).unwrap(), 4);
/// assert_eq!(conf.get_raw("ember.a"), Some("1"));
/// assert_eq!(conf.get_raw("ember.b"), Some("3"));
/// ```
#[derive(Clone, Default)]
pub struct ConfLoader {
    properties_file: Option<PathBuf>,
    entries: Vec<ConfigEntryDoc>,
    opts_env_vars: Vec<String>,
    cli_pairs: Vec<(String, String)>,
    env: EnvSource,
}

impl ConfLoader {
    /// A loader that reads the default properties file and the process environment, with no
    /// entries, options variables or command-line pairs yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads this file instead of the default one (`--properties-file`); it must exist. `None`
    /// keeps the default file.
    pub fn properties_file(mut self, path: Option<PathBuf>) -> Self {
        self.properties_file = path;
        self
    }

    /// Adds entries whose environment variables are read (those declared with
    /// [`with_env`](super::ConfigEntry::with_env)).
    pub fn entries(mut self, entries: &[ConfigEntryDoc]) -> Self {
        self.entries.extend_from_slice(entries);
        self
    }

    /// Adds options variables (such as `EMBER_DAEMON_OPTS`, `EMBER_MASTER_OPTS`) whose
    /// `-Dkey=value` tokens are read; a later variable overrides an earlier one.
    pub fn opts_env_vars(mut self, vars: &[&str]) -> Self {
        self.opts_env_vars
            .extend(vars.iter().map(|var| (*var).to_owned()));
        self
    }

    /// Adds command-line pairs; a later pair overrides an earlier one. Parse `--conf` arguments
    /// with [`parse_conf_pair`].
    pub fn cli_pairs(mut self, pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        self.cli_pairs.extend(pairs);
        self
    }

    /// Adds one command-line pair, such as a daemon flag mapped to its key (`--cores 4` to
    /// `ember.worker.cores=4`).
    pub fn cli_pair(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.cli_pairs.push((key.into(), value.into()));
        self
    }

    /// Reads environment variables from this map instead of the process environment (for tests,
    /// or for a child process's prepared environment). Variables not in the map are unset.
    pub fn env_vars<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let map = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.env = EnvSource::Map(map);
        self
    }

    /// The properties file that [`load`](ConfLoader::load) reads: the explicit one, else the
    /// default one if `EMBER_CONF_DIR` or `EMBER_HOME` is set (whether or not it exists).
    pub fn properties_file_path(&self) -> Option<PathBuf> {
        if let Some(path) = &self.properties_file {
            return Some(path.clone());
        }
        let non_empty = |var| self.env.get(var).filter(|v| !v.is_empty());
        if let Some(dir) = non_empty(CONF_DIR_ENV) {
            return Some(Path::new(&dir).join(DEFAULTS_FILE_NAME));
        }
        non_empty(HOME_ENV).map(|home| Path::new(&home).join("conf").join(DEFAULTS_FILE_NAME))
    }

    /// Builds the configuration. Fails on an explicit properties file that cannot be read, a
    /// default file that exists but cannot be read, a malformed line in either, or a malformed
    /// options token. Values are not checked here: typed reads report them.
    pub fn load(&self) -> Result<EmberConf, ConfError> {
        let mut conf = EmberConf::new();

        if let Some(path) = self.properties_file_path() {
            match read_properties_file(&path) {
                Ok(properties) => {
                    tracing::debug!(path = %path.display(), count = properties.len(), "read properties file");
                    for property in properties {
                        conf.set(property.key, property.value);
                    }
                }
                Err(ConfError::PropertiesFile { source, .. })
                    if self.properties_file.is_none()
                        && source.kind() == std::io::ErrorKind::NotFound =>
                {
                    tracing::debug!(path = %path.display(), "no default properties file");
                }
                Err(e) => return Err(e),
            }
        }

        for entry in &self.entries {
            if let Some(var) = entry.env()
                && let Some(value) = self.env.get(var).filter(|v| !v.is_empty())
            {
                conf.set(entry.key(), value);
            }
        }

        for var in &self.opts_env_vars {
            if let Some(value) = self.env.get(var) {
                for (key, value) in parse_opts(var, &value)? {
                    conf.set(key, value);
                }
            }
        }

        for (key, value) in &self.cli_pairs {
            conf.set(key.clone(), value.clone());
        }
        Ok(conf)
    }
}

impl fmt::Debug for ConfLoader {
    // The environment map may hold secrets: only its size is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env = match &self.env {
            EnvSource::Process => "process".to_owned(),
            EnvSource::Map(map) => format!("map of {} variables", map.len()),
        };
        f.debug_struct("ConfLoader")
            .field("properties_file", &self.properties_file)
            .field("entries", &self.entries.len())
            .field("opts_env_vars", &self.opts_env_vars)
            .field(
                "cli_keys",
                &self.cli_pairs.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("env", &env)
            .finish()
    }
}

/// Splits a `key=value` argument (as given to `--conf`) at its first `=`. The key is trimmed and
/// must not be empty; the value is kept as given and may be empty.
pub fn parse_conf_pair(input: &str) -> Result<(String, String), ConfError> {
    match input.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(ConfError::BadPair {
            input: redact_pair_text(input),
        }),
    }
}

/// Reads the `-Dkey=value` tokens of the options variable `var` whose value is `value`. Tokens
/// are separated by whitespace; any token that is not `-D`, a non-empty key, `=` and a value is an
/// error naming the variable and the token.
pub fn parse_opts(var: &str, value: &str) -> Result<Vec<(String, String)>, ConfError> {
    value
        .split_whitespace()
        .map(|token| {
            token
                .strip_prefix("-D")
                .and_then(|pair| pair.split_once('='))
                .filter(|(key, _)| !key.is_empty())
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .ok_or_else(|| ConfError::BadOpt {
                    var: var.to_owned(),
                    token: redact_pair_text(token),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::conf::entry::ConfigEntry;

    const KEY: &str = "ember.test.level";
    const LEVEL: ConfigEntry<String> =
        ConfigEntry::new(KEY, Some("default"), "A test key.").with_env("EMBER_TEST_LEVEL");

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "ember-conf-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir_env(dir: &TempDir) -> Vec<(String, String)> {
        vec![(CONF_DIR_ENV.to_owned(), dir.0.display().to_string())]
    }

    #[test]
    fn precedence_is_defaults_file_env_opts_cli_code() {
        // Each layer, lowest first; a row sets the key in some layers and expects the highest.
        #[derive(Clone, Copy, Debug, PartialEq)]
        enum Layer {
            File,
            Env,
            Opts,
            Cli,
            Code,
        }
        use Layer::*;
        let layers = [File, Env, Opts, Cli, Code];
        let value_of = |layer: Layer| format!("{layer:?}").to_lowercase();
        let table: Vec<(Vec<Layer>, &str)> = vec![
            (vec![], "default"),
            (vec![File], "file"),
            (vec![File, Env], "env"),
            (vec![Env, Opts], "opts"),
            (vec![File, Env, Opts, Cli], "cli"),
            (vec![File, Code], "code"),
            (vec![File, Env, Opts, Cli, Code], "code"),
        ];
        // The table's rows, then every other combination of layers.
        let all = (0..1u32 << layers.len()).map(|mask| {
            let set: Vec<Layer> = layers
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, l)| *l)
                .collect();
            let want = set.last().map_or("default".to_owned(), |l| value_of(*l));
            (set, want)
        });
        let rows = table
            .into_iter()
            .map(|(set, want)| (set, want.to_owned()))
            .chain(all);
        for (set, want) in rows {
            let dir = TempDir::new();
            let mut env = dir_env(&dir);
            env.push(("EMBER_DAEMON_OPTS".into(), "-Dember.other=1".into()));
            let mut loader = EmberConf::loader().entries(&[LEVEL.describe()]);
            if set.contains(&File) {
                dir.write(DEFAULTS_FILE_NAME, &format!("{KEY} file\n"));
            }
            if set.contains(&Env) {
                env.push(("EMBER_TEST_LEVEL".into(), "env".into()));
            }
            if set.contains(&Opts) {
                env.push(("EMBER_MASTER_OPTS".into(), format!("-D{KEY}=opts")));
            }
            if set.contains(&Cli) {
                loader = loader.cli_pair(KEY, "cli");
            }
            let mut conf = loader
                .opts_env_vars(&["EMBER_DAEMON_OPTS", "EMBER_MASTER_OPTS"])
                .env_vars(env)
                .load()
                .unwrap();
            if set.contains(&Code) {
                conf.set(KEY, "code");
            }
            assert_eq!(conf.get(&LEVEL).unwrap(), want, "layers {set:?}");
            assert_eq!(conf.get_raw("ember.other"), Some("1"));
        }
    }

    #[test]
    fn default_file_location() {
        let loader = |env: &[(&str, &str)]| EmberConf::loader().env_vars(env.iter().copied());
        assert_eq!(loader(&[]).properties_file_path(), None);
        assert_eq!(
            loader(&[(HOME_ENV, "/opt/ember")]).properties_file_path(),
            Some(PathBuf::from("/opt/ember/conf/ember-defaults.conf"))
        );
        assert_eq!(
            loader(&[(HOME_ENV, "/opt/ember"), (CONF_DIR_ENV, "/etc/ember")])
                .properties_file_path(),
            Some(PathBuf::from("/etc/ember/ember-defaults.conf"))
        );
        assert_eq!(
            loader(&[(CONF_DIR_ENV, "/etc/ember")])
                .properties_file(Some("/x.conf".into()))
                .properties_file_path(),
            Some(PathBuf::from("/x.conf"))
        );
    }

    #[test]
    fn home_conf_file_is_read_and_explicit_file_replaces_it() {
        let home = TempDir::new();
        home.write("conf/ember-defaults.conf", "ember.a=home\nember.b=home\n");
        let other = home.write("other.conf", "ember.a=other\n");
        let env = [(HOME_ENV.to_owned(), home.0.display().to_string())];
        let conf = EmberConf::loader().env_vars(env.clone()).load().unwrap();
        assert_eq!(conf.get_raw("ember.a"), Some("home"));
        let conf = EmberConf::loader()
            .env_vars(env)
            .properties_file(Some(other))
            .load()
            .unwrap();
        assert_eq!(conf.get_raw("ember.a"), Some("other"));
        assert_eq!(conf.get_raw("ember.b"), None);
    }

    #[test]
    fn missing_default_file_is_fine_but_missing_explicit_file_is_not() {
        let dir = TempDir::new();
        let conf = EmberConf::loader().env_vars(dir_env(&dir)).load().unwrap();
        assert!(conf.is_empty());

        let missing = dir.0.join("nope.conf");
        let err = EmberConf::loader()
            .env_vars(dir_env(&dir))
            .properties_file(Some(missing.clone()))
            .load()
            .unwrap_err();
        assert!(matches!(err, ConfError::PropertiesFile { ref path, .. } if *path == missing));
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn unreadable_default_file_is_an_error() {
        let dir = TempDir::new();
        std::fs::create_dir(dir.0.join(DEFAULTS_FILE_NAME)).unwrap();
        let err = EmberConf::loader()
            .env_vars(dir_env(&dir))
            .load()
            .unwrap_err();
        assert!(matches!(err, ConfError::PropertiesFile { .. }), "{err:?}");
    }

    #[test]
    fn malformed_file_line_is_reported() {
        let dir = TempDir::new();
        dir.write(DEFAULTS_FILE_NAME, "ember.a=1\n=oops\n");
        let err = EmberConf::loader()
            .env_vars(dir_env(&dir))
            .load()
            .unwrap_err();
        assert!(
            matches!(err, ConfError::MalformedLine { line: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn empty_env_values_are_ignored() {
        let conf = EmberConf::loader()
            .entries(&[LEVEL.describe()])
            .opts_env_vars(&["EMBER_DAEMON_OPTS"])
            .env_vars([("EMBER_TEST_LEVEL", ""), ("EMBER_DAEMON_OPTS", "  ")])
            .load()
            .unwrap();
        assert!(conf.is_empty());
    }

    #[test]
    fn opts_tokens() {
        assert_eq!(
            parse_opts("V", " -Dember.a=1\t-Dember.b=x=y  -Dember.c= ").unwrap(),
            vec![
                ("ember.a".into(), "1".into()),
                ("ember.b".into(), "x=y".into()),
                ("ember.c".into(), "".into()),
            ]
        );
        for bad in ["-Xmx1g", "-Dember.a", "-D=1", "ember.a=1"] {
            let err = parse_opts("EMBER_DAEMON_OPTS", &format!("-Dember.ok=1 {bad}")).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("EMBER_DAEMON_OPTS"), "{text}");
            assert!(text.contains(bad), "{text}");
        }
        let err = parse_opts("V", "-Dember.auth.secret:hunter2").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn malformed_opts_fail_the_load() {
        let err = EmberConf::loader()
            .opts_env_vars(&["EMBER_WORKER_OPTS"])
            .env_vars([("EMBER_WORKER_OPTS", "-Dember.a")])
            .load()
            .unwrap_err();
        assert!(matches!(err, ConfError::BadOpt { ref var, .. } if var == "EMBER_WORKER_OPTS"));
    }

    #[test]
    fn conf_pairs() {
        assert_eq!(
            parse_conf_pair("ember.a=b=c").unwrap(),
            ("ember.a".into(), "b=c".into())
        );
        assert_eq!(
            parse_conf_pair(" ember.a =").unwrap(),
            ("ember.a".into(), "".into())
        );
        for bad in ["ember.a", "=1", " =1", ""] {
            let err = parse_conf_pair(bad).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("malformed configuration argument {bad:?}: expected key=value")
            );
        }
        let err = parse_conf_pair("ember.secret:hunter2").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("hunter2"), "{err}");
    }

    #[test]
    fn debug_hides_the_environment() {
        let loader = EmberConf::loader()
            .env_vars([("EMBER_AUTH_SECRET", "hunter2")])
            .cli_pair("ember.authenticate.secret", "hunter3");
        let shown = format!("{loader:?}");
        assert!(!shown.contains("hunter"), "{shown}");
    }
}
