//! Master URLs: where an application runs.
//!
//! Spark counterpart: `SparkMasterRegex` and the `match` in `SparkContext.createTaskScheduler`.
//!
//! | URL | meaning |
//! |---|---|
//! | `local` | one task thread in the driver, one attempt per task |
//! | `local[N]` | N task threads, one attempt per task |
//! | `local[*]` | one task thread per available core |
//! | `local[N,F]`, `local[*,F]` | as above, F attempts per task |
//! | `local-cluster[W,C,M]` | a Master and W Workers of C cores and M MiB in the driver process, with real executor processes |
//! | `ember://host:port[,host:port…]` | a standalone cluster (several masters for high availability) |

use std::fmt;

use ember_rpc::RpcAddress;

use crate::error::CoreError;

/// A parsed master URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterUrl {
    /// Tasks run on threads of the driver process.
    Local {
        /// Task threads.
        threads: usize,
        /// Attempts per task (`F` of `local[N,F]`; 1 otherwise, as in Spark: local mode does not
        /// retry).
        max_failures: u32,
    },
    /// A whole cluster inside the driver process.
    LocalCluster {
        /// Workers to start.
        workers: u32,
        /// Cores per worker.
        cores_per_worker: u32,
        /// Memory per worker, in MiB.
        memory_per_worker_mb: u32,
    },
    /// A standalone cluster.
    Standalone {
        /// Its masters, in the order given.
        masters: Vec<RpcAddress>,
    },
}

impl MasterUrl {
    /// Parses a master URL; the error names the URL and what is wrong with it.
    pub fn parse(url: &str) -> Result<Self, CoreError> {
        let url = url.trim();
        let bad = |reason: &str| CoreError::InvalidMasterUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if url == "local" {
            return Ok(MasterUrl::Local {
                threads: 1,
                max_failures: 1,
            });
        }
        if let Some(inner) = bracketed(url, "local-cluster") {
            let parts = numbers(inner).ok_or_else(|| {
                bad("expected local-cluster[W,C,M] with positive integers W (workers), C (cores per worker) and M (MiB per worker)")
            })?;
            let [workers, cores_per_worker, memory_per_worker_mb] = parts[..] else {
                return Err(bad(
                    "expected three numbers: local-cluster[workers,coresPerWorker,memoryPerWorkerMiB]",
                ));
            };
            if workers == 0 || cores_per_worker == 0 || memory_per_worker_mb == 0 {
                return Err(bad("workers, cores and memory must all be at least 1"));
            }
            return Ok(MasterUrl::LocalCluster {
                workers,
                cores_per_worker,
                memory_per_worker_mb,
            });
        }
        if let Some(inner) = bracketed(url, "local") {
            let (threads, failures) = match inner.split_once(',') {
                Some((t, f)) => (t.trim(), Some(f.trim())),
                None => (inner.trim(), None),
            };
            let threads = if threads == "*" {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                match threads.parse::<usize>() {
                    Ok(0) => return Err(bad("the number of threads must be at least 1")),
                    Ok(n) => n,
                    Err(_) => {
                        return Err(bad(
                            "expected local[N] or local[*], optionally with attempts: local[N,F]",
                        ));
                    }
                }
            };
            let max_failures = match failures {
                None => 1,
                Some(f) => match f.parse::<u32>() {
                    Ok(0) => return Err(bad("the number of task attempts must be at least 1")),
                    Ok(n) => n,
                    Err(_) => return Err(bad("expected local[N,F] with F a positive integer")),
                },
            };
            return Ok(MasterUrl::Local {
                threads,
                max_failures,
            });
        }
        if url.starts_with("ember://") {
            let masters = RpcAddress::parse_master_urls(url).map_err(|e| bad(&e.reason))?;
            return Ok(MasterUrl::Standalone { masters });
        }
        if url.starts_with("spark://") {
            return Err(bad("Ember masters use the ember:// scheme"));
        }
        Err(bad(
            "expected local, local[N], local[*], local[N,F], local-cluster[W,C,M] or ember://host:port",
        ))
    }

    /// Whether tasks run inside the driver process.
    pub fn is_local(&self) -> bool {
        matches!(self, MasterUrl::Local { .. })
    }
}

impl fmt::Display for MasterUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MasterUrl::Local {
                threads,
                max_failures: 1,
            } => write!(f, "local[{threads}]"),
            MasterUrl::Local {
                threads,
                max_failures,
            } => write!(f, "local[{threads},{max_failures}]"),
            MasterUrl::LocalCluster {
                workers,
                cores_per_worker,
                memory_per_worker_mb,
            } => write!(
                f,
                "local-cluster[{workers},{cores_per_worker},{memory_per_worker_mb}]"
            ),
            MasterUrl::Standalone { masters } => {
                f.write_str("ember://")?;
                for (i, m) in masters.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{m}")?;
                }
                Ok(())
            }
        }
    }
}

/// `name[inner]` → `inner`.
fn bracketed<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    url.strip_prefix(name)?.strip_prefix('[')?.strip_suffix(']')
}

/// Comma-separated positive integers.
fn numbers(inner: &str) -> Option<Vec<u32>> {
    inner
        .split(',')
        .map(|p| p.trim().parse::<u32>().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(threads: usize, max_failures: u32) -> MasterUrl {
        MasterUrl::Local {
            threads,
            max_failures,
        }
    }

    #[test]
    fn parses_every_form() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let table = [
            ("local", local(1, 1)),
            ("local[1]", local(1, 1)),
            ("local[4]", local(4, 1)),
            (" local[4] ", local(4, 1)),
            ("local[*]", local(cores, 1)),
            ("local[3,5]", local(3, 5)),
            ("local[*, 2]", local(cores, 2)),
            (
                "local-cluster[2,1,1024]",
                MasterUrl::LocalCluster {
                    workers: 2,
                    cores_per_worker: 1,
                    memory_per_worker_mb: 1024,
                },
            ),
            (
                "ember://m1:7077",
                MasterUrl::Standalone {
                    masters: vec![RpcAddress::new("m1", 7077)],
                },
            ),
            (
                "ember://m1:7077,m2:7078",
                MasterUrl::Standalone {
                    masters: vec![RpcAddress::new("m1", 7077), RpcAddress::new("m2", 7078)],
                },
            ),
        ];
        for (url, want) in table {
            assert_eq!(MasterUrl::parse(url).unwrap(), want, "{url}");
        }
    }

    #[test]
    fn malformed_urls_are_errors_naming_the_url() {
        let table = [
            ("", "expected local"),
            ("yarn", "expected local"),
            ("local[0]", "at least 1"),
            ("local[x]", "expected local[N]"),
            ("local[2,0]", "at least 1"),
            ("local[2,x]", "F a positive integer"),
            ("local[2", "expected local"),
            ("local-cluster[2,1]", "three numbers"),
            ("local-cluster[2,0,1024]", "at least 1"),
            ("local-cluster[a,b,c]", "positive integers"),
            ("ember://", "empty host:port"),
            ("ember://m1", "lacks a port"),
            ("ember://m1:99999", "invalid port"),
            ("spark://m1:7077", "ember:// scheme"),
        ];
        for (url, reason) in table {
            let err = MasterUrl::parse(url).unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(&err, CoreError::InvalidMasterUrl { url: u, .. } if u == url.trim()),
                "{url}: {err:?}"
            );
            assert!(text.contains(reason), "{url}: {text}");
            assert!(text.contains(&format!("{:?}", url.trim())), "{url}: {text}");
        }
    }

    #[test]
    fn display_round_trips() {
        for url in ["local[3,5]", "local-cluster[2,1,1024]", "ember://a:1,b:2"] {
            let parsed = MasterUrl::parse(url).unwrap();
            assert_eq!(parsed.to_string(), url);
            assert_eq!(MasterUrl::parse(&parsed.to_string()).unwrap(), parsed);
        }
    }
}
