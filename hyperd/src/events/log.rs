//! The on-disk event log: JSON lines in `<root>/events/`, the newest in `events.jsonl`, the
//! segment before it in `events.1.jsonl`. A segment is closed at [`SEGMENT_EVENTS`] events or
//! [`SEGMENT_BYTES`] bytes, whichever comes first, and becomes the older one, replacing the
//! segment before it: the log keeps at most twice that, the most recent events, on disk.
//!
//! Lines are appended one `write` each by the one writer thread ([`super::Hub`]'s), not synced:
//! a crash of hyperd loses nothing the kernel has, a crash of the machine may leave the last
//! line torn. Reading skips every line that is not a whole record, and opening cuts a torn tail
//! off so the next line starts clean.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::Record;

/// Events in one segment before it is closed.
pub(crate) const SEGMENT_EVENTS: u64 = 5_000;
/// Bytes in one segment before it is closed.
pub(crate) const SEGMENT_BYTES: u64 = 4 << 20;

const CURRENT: &str = "events.jsonl";
const OLDER: &str = "events.1.jsonl";

/// The log's segment being appended to.
#[derive(Debug)]
pub(crate) struct Log {
    segments: Arc<Segments>,
    file: File,
    events: u64,
    bytes: u64,
}

/// The log's two segments, as readers see them.
#[derive(Debug)]
pub(crate) struct Segments {
    dir: PathBuf,
    /// Written while a rotation moves the segments, read while a replay reads both: a replay
    /// never sees one segment before a rotation and the other after it. Appends need no lock:
    /// a line a replay reads half-written is a torn line, skipped, and its event comes live.
    rotation: RwLock<()>,
}

impl Log {
    /// Opens the log in `dir` (created, private, if missing), cutting a torn last line; returns
    /// it and the sequence number of the last event it holds (0 for none).
    pub(crate) fn open(dir: &Path) -> io::Result<(Log, u64)> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mut file = open_segment(&dir.join(CURRENT))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)?;
        let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if whole < text.len() {
            file.set_len(whole as u64)?;
        }
        file.seek(SeekFrom::End(0))?;
        let records = parse(&text[..whole]);
        let last = match records.last() {
            Some(r) => r.sequence,
            None => {
                let mut last = 0;
                for_each_record(&dir.join(OLDER), |r| last = r.sequence)?;
                last
            }
        };
        let segments = Arc::new(Segments {
            dir: dir.to_path_buf(),
            rotation: RwLock::new(()),
        });
        let log = Log {
            segments,
            file,
            events: records.len() as u64,
            bytes: whole as u64,
        };
        Ok((log, last))
    }

    /// Appends `record`, closing the segment first when it is full.
    pub(crate) fn append(&mut self, record: &Record) -> io::Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        let size = line.len() as u64;
        if self.events >= SEGMENT_EVENTS || (self.events > 0 && self.bytes + size > SEGMENT_BYTES) {
            self.rotate()?;
        }
        if let Err(e) = self.file.write_all(&line) {
            // A part written (a full disk) would glue the next line onto it: cut it off.
            let _ = self.file.set_len(self.bytes);
            return Err(e);
        }
        self.events += 1;
        self.bytes += size;
        Ok(())
    }

    /// The segments, for replays.
    pub(crate) fn segments(&self) -> Arc<Segments> {
        self.segments.clone()
    }

    fn rotate(&mut self) -> io::Result<()> {
        // A rotation whose rename went through but whose new segment did not open left no
        // current segment: it was rotated already, and retrying only needs the open.
        let dir = &self.segments.dir;
        let _rotating = self
            .segments
            .rotation
            .write()
            .unwrap_or_else(|e| e.into_inner());
        match fs::rename(dir.join(CURRENT), dir.join(OLDER)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        self.file = open_segment(&dir.join(CURRENT))?;
        self.events = 0;
        self.bytes = 0;
        Ok(())
    }
}

impl Segments {
    /// The logged records `keep` accepts, oldest first, and the sequence number of the last
    /// whole record logged (0 for none), read from both segments as one snapshot; a record
    /// `keep` refuses is dropped as soon as it is parsed, so a replay holds only what it wants.
    pub(crate) fn replay(
        &self,
        mut keep: impl FnMut(&Record) -> bool,
    ) -> io::Result<(Vec<Record>, u64)> {
        let _snapshot = self.rotation.read().unwrap_or_else(|e| e.into_inner());
        let (mut kept, mut last) = (Vec::new(), 0);
        for segment in [OLDER, CURRENT] {
            for_each_record(&self.dir.join(segment), |r| {
                last = r.sequence;
                if keep(&r) {
                    kept.push(r);
                }
            })?;
        }
        Ok((kept, last))
    }
}

fn open_segment(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// Hands each whole record of the segment at `path` to `each`, a line at a time; a missing
/// segment has none.
fn for_each_record(path: &Path, mut each: impl FnMut(Record)) -> io::Result<()> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for line in BufReader::new(file).split(b'\n') {
        if let Ok(r) = serde_json::from_slice(&line?) {
            each(r);
        }
    }
    Ok(())
}

/// The whole records among `text`'s lines; a torn or foreign line is skipped.
fn parse(text: &[u8]) -> Vec<Record> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice(line).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Kind;

    /// Every whole record in the log in `dir`, oldest first.
    fn read_all(dir: &Path) -> io::Result<Vec<Record>> {
        let mut records = Vec::new();
        for segment in [OLDER, CURRENT] {
            for_each_record(&dir.join(segment), |r| records.push(r))?;
        }
        Ok(records)
    }

    fn record(sequence: u64) -> Record {
        Record {
            sequence,
            time_unix_nano: sequence as i64 * 10,
            kind: Kind::Tag,
            digest: String::new(),
            name: format!("docker.io/library/app:{sequence}"),
            id: String::new(),
            uid: Some(0),
            attributes: Default::default(),
        }
    }

    #[test]
    fn the_log_keeps_two_segments_of_the_newest_events() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, last) = Log::open(dir.path()).unwrap();
        assert_eq!(last, 0);
        let total = SEGMENT_EVENTS * 2 + 7;
        for s in 1..=total {
            log.append(&record(s)).unwrap();
        }
        let kept = read_all(dir.path()).unwrap();
        // The oldest segment went at the second rotation: one full segment and 7 remain.
        assert_eq!(kept.len() as u64, SEGMENT_EVENTS + 7);
        assert_eq!(kept.last().unwrap().sequence, total);
        let sequences: Vec<u64> = kept.iter().map(|r| r.sequence).collect();
        assert!(sequences.windows(2).all(|w| w[1] == w[0] + 1));
        let (_, last) = Log::open(dir.path()).unwrap();
        assert_eq!(last, total);
    }

    #[test]
    fn a_segment_is_closed_at_its_byte_bound() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path()).unwrap();
        let mut big = record(1);
        big.attributes.insert("x".into(), "y".repeat(1 << 20));
        for s in 1..=9 {
            big.sequence = s;
            log.append(&big).unwrap();
        }
        let on_disk: u64 = [CURRENT, OLDER]
            .iter()
            .map(|f| fs::metadata(dir.path().join(f)).map_or(0, |m| m.len()))
            .sum();
        assert!(on_disk <= 2 * SEGMENT_BYTES, "{on_disk}");
        assert_eq!(read_all(dir.path()).unwrap().last().unwrap().sequence, 9);
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path()).unwrap();
        log.append(&record(1)).unwrap();
        log.append(&record(2)).unwrap();
        drop(log);
        let path = dir.path().join(CURRENT);
        let mut torn = OpenOptions::new().append(true).open(&path).unwrap();
        torn.write_all(br#"{"sequence":3,"time_unix_"#).unwrap();
        assert_eq!(read_all(dir.path()).unwrap().len(), 2);
        let (mut log, last) = Log::open(dir.path()).unwrap();
        assert_eq!(last, 2);
        log.append(&record(3)).unwrap();
        let kept = read_all(dir.path()).unwrap();
        let sequences: Vec<u64> = kept.iter().map(|r| r.sequence).collect();
        assert_eq!(sequences, [1, 2, 3]);
    }

    #[test]
    fn garbage_lines_are_skipped_never_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let line = serde_json::to_string(&record(4)).unwrap();
        let text = format!("not json\n\u{0}\u{1}\n{line}\n{{\"sequence\":\n");
        fs::write(dir.path().join(CURRENT), text).unwrap();
        let (_, last) = Log::open(dir.path()).unwrap();
        assert_eq!(last, 4);
        assert_eq!(read_all(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn a_replay_keeps_only_what_it_asks_for_and_tells_the_last_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path()).unwrap();
        let total = SEGMENT_EVENTS + 10;
        for s in 1..=total {
            log.append(&record(s)).unwrap();
        }
        let (kept, last) = log.segments().replay(|r| r.sequence % 1000 == 0).unwrap();
        let sequences: Vec<u64> = kept.iter().map(|r| r.sequence).collect();
        assert_eq!(sequences, [1000, 2000, 3000, 4000, 5000]);
        assert_eq!(last, total);
    }

    #[test]
    fn a_rotation_that_renamed_but_did_not_open_is_finished_by_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path()).unwrap();
        for s in 1..=SEGMENT_EVENTS {
            log.append(&record(s)).unwrap();
        }
        // What a rotation leaves when its rename succeeded and opening the new segment failed.
        fs::rename(dir.path().join(CURRENT), dir.path().join(OLDER)).unwrap();
        log.append(&record(SEGMENT_EVENTS + 1)).unwrap();
        log.append(&record(SEGMENT_EVENTS + 2)).unwrap();
        let kept = read_all(dir.path()).unwrap();
        assert_eq!(kept.len() as u64, SEGMENT_EVENTS + 2);
        assert_eq!(kept.last().unwrap().sequence, SEGMENT_EVENTS + 2);
        let current = read_all_of(&dir.path().join(CURRENT));
        assert_eq!(current, [SEGMENT_EVENTS + 1, SEGMENT_EVENTS + 2]);
    }

    fn read_all_of(path: &Path) -> Vec<u64> {
        let mut sequences = Vec::new();
        for_each_record(path, |r| sequences.push(r.sequence)).unwrap();
        sequences
    }
}
