//! Where this executable's code lives in memory, for the range check on decoded code pointers.
//!
//! On Linux the executable mappings of the main binary are read once from `/proc/self/maps`: the
//! mapping that contains a known function of this crate names the file (by device and inode), and
//! every executable mapping of that file counts as code. Elsewhere, or if the maps cannot be read,
//! the check falls back to a span around a known function that no real image exceeds.

use std::sync::OnceLock;

/// No executable image is larger than this; used when the real bounds are unknown.
const FALLBACK_SPAN: usize = 1 << 30;

/// The address ranges `[start, end)` that hold this executable's code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CodeRanges {
    ranges: Vec<(usize, usize)>,
}

impl CodeRanges {
    /// The ranges of the running executable, computed once.
    pub(crate) fn current() -> &'static CodeRanges {
        static RANGES: OnceLock<CodeRanges> = OnceLock::new();
        RANGES.get_or_init(|| {
            let probe = probe_address();
            match read_maps().and_then(|maps| Self::from_maps(&maps, probe)) {
                Some(ranges) => ranges,
                None => {
                    tracing::debug!(
                        "executable mappings unavailable; code pointers are range-checked \
                         against a {FALLBACK_SPAN}-byte span"
                    );
                    Self::fallback(probe)
                }
            }
        })
    }

    /// Whether `addr` lies inside the executable's code.
    pub(crate) fn contains(&self, addr: usize) -> bool {
        self.ranges
            .iter()
            .any(|&(start, end)| start <= addr && addr < end)
    }

    fn fallback(probe: usize) -> Self {
        Self {
            ranges: vec![(
                probe.saturating_sub(FALLBACK_SPAN),
                probe.saturating_add(FALLBACK_SPAN),
            )],
        }
    }

    /// Parses `/proc/self/maps` text. Returns `None` if no mapping contains `probe`.
    fn from_maps(maps: &str, probe: usize) -> Option<Self> {
        let entries: Vec<MapEntry<'_>> = maps.lines().filter_map(MapEntry::parse).collect();
        let home = entries
            .iter()
            .find(|e| e.start <= probe && probe < e.end && e.executable)?;
        let ranges: Vec<(usize, usize)> = if home.inode == 0 {
            // Anonymous code (unusual): trust only the mapping the probe is in.
            vec![(home.start, home.end)]
        } else {
            entries
                .iter()
                .filter(|e| e.executable && e.device == home.device && e.inode == home.inode)
                .map(|e| (e.start, e.end))
                .collect()
        };
        Some(Self { ranges })
    }
}

/// The address of a function that is certainly part of the main executable's code.
fn probe_address() -> usize {
    let probe: fn() -> &'static CodeRanges = CodeRanges::current;
    (probe as *const ()).addr()
}

fn read_maps() -> Option<String> {
    if cfg!(target_os = "linux") {
        std::fs::read_to_string("/proc/self/maps").ok()
    } else {
        None
    }
}

/// One line of `/proc/self/maps`: `start-end perms offset dev inode [path]`.
#[derive(Debug)]
struct MapEntry<'a> {
    start: usize,
    end: usize,
    executable: bool,
    device: &'a str,
    inode: u64,
}

impl<'a> MapEntry<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let mut fields = line.split_ascii_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let perms = fields.next()?;
        let _offset = fields.next()?;
        let device = fields.next()?;
        let inode = fields.next()?.parse().ok()?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        (start < end).then_some(Self {
            start,
            end,
            executable: perms.as_bytes().get(2) == Some(&b'x'),
            device,
            inode,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0000000-55d0c0010000 r--p 00000000 fd:01 1234 /usr/bin/app
55d0c0010000-55d0c0090000 r-xp 00010000 fd:01 1234 /usr/bin/app
55d0c0090000-55d0c00a0000 r--p 00090000 fd:01 1234 /usr/bin/app
55d0c00b0000-55d0c00b1000 r-xp 000b0000 fd:01 1234 /usr/bin/app
7f0000000000-7f0000100000 r-xp 00000000 fd:01 999 /usr/lib/libc.so.6
7f0000200000-7f0000201000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00001000 r-xp 00000000 00:00 0 [vdso]
garbage line
";

    #[test]
    fn code_ranges_cover_only_the_executables_own_code() {
        let ranges = CodeRanges::from_maps(MAPS, 0x55d0c0020000).unwrap();
        assert_eq!(
            ranges.ranges,
            vec![
                (0x55d0c0010000, 0x55d0c0090000),
                (0x55d0c00b0000, 0x55d0c00b1000)
            ]
        );
        assert!(ranges.contains(0x55d0c0010000));
        assert!(!ranges.contains(0x55d0c0090000)); // read-only data
        assert!(!ranges.contains(0x7f0000000100)); // libc
        assert!(!ranges.contains(0x7ffd00000000)); // vdso
        assert!(!ranges.contains(0));
    }

    #[test]
    fn a_probe_outside_any_code_mapping_yields_none() {
        assert!(CodeRanges::from_maps(MAPS, 0x55d0c0000100).is_none());
        assert!(CodeRanges::from_maps("", 0x1000).is_none());
    }

    #[test]
    fn the_running_executable_contains_its_own_functions() {
        let ranges = CodeRanges::current();
        assert!(ranges.contains(probe_address()));
        let here: fn() = the_running_executable_contains_its_own_functions;
        assert!(ranges.contains((here as *const ()).addr()));
        assert!(!ranges.contains(0));
        assert!(!ranges.contains(usize::MAX));
    }
}
