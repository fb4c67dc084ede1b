//! One subscriber's events: the logged ones since a time, then the live ones, filtered.
//!
//! No gap and no duplicate between the two: the subscription takes its live receiver first,
//! then has the writer thread flush, then reads the log's two segments as one snapshot (a
//! rotation waits for the read). Every event emitted before the flush is in the log, every one
//! emitted after the receiver was taken is in the receiver; a live event whose sequence number
//! the log already gave is passed over. The replay keeps only the events the filter matches.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use store::ImageName;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use super::{Hub, Kind, Record};

/// Which events a subscriber wants, among those it may see.
///
/// Root sees every event whole. Another caller sees its own events whole, others' without
/// their `uid`, and never others' `save` events: a save only reads, and would otherwise tell
/// one user what another exported. A caller without peer credentials is nobody's owner.
#[derive(Debug)]
pub(crate) struct Filter {
    kinds: HashSet<Kind>,
    images: Vec<Wanted>,
    /// The subscriber's uid.
    viewer: Option<u32>,
}

/// An image a filter names.
#[derive(Debug)]
struct Wanted {
    /// As given: compared with digests and IDs.
    given: String,
    name: Option<ImageName>,
    /// Given without a tag: every tag of the repository.
    any_tag: bool,
}

impl Filter {
    /// The filter of `types` (none for all) and `images` (none for all) for the subscriber
    /// `viewer`; an unknown type is refused with a message that lists the known ones.
    pub(crate) fn new(
        types: &[String],
        images: Vec<String>,
        viewer: Option<u32>,
    ) -> Result<Filter, String> {
        let mut kinds = HashSet::new();
        for t in types {
            let kind = Kind::parse(t).ok_or_else(|| {
                let known: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown event type {t:?}; known: {}", known.join(", "))
            })?;
            kinds.insert(kind);
        }
        let images = images
            .into_iter()
            .map(|given| {
                let last = given.rsplit('/').next().unwrap_or_default();
                let any_tag = !last.contains(':') && !given.contains('@');
                Wanted {
                    name: given.parse().ok(),
                    any_tag,
                    given,
                }
            })
            .collect();
        Ok(Filter {
            kinds,
            images,
            viewer,
        })
    }

    pub(crate) fn matches(&self, r: &Record) -> bool {
        let visible = r.kind != Kind::Save || self.shows_uid(r);
        let kind = self.kinds.is_empty() || self.kinds.contains(&r.kind);
        visible && kind && (self.images.is_empty() || self.images.iter().any(|w| w.matches(r)))
    }

    /// Whether the subscriber may see who caused `r`: root always, another uid its own.
    pub(crate) fn shows_uid(&self, r: &Record) -> bool {
        self.viewer == Some(0) || (self.viewer.is_some() && r.uid == self.viewer)
    }
}

impl Wanted {
    fn matches(&self, r: &Record) -> bool {
        if !self.given.is_empty() && (self.given == r.digest || self.given == r.id) {
            return true;
        }
        let others = r.attributes.get("names").map(String::as_str);
        let names =
            std::iter::once(r.name.as_str()).chain(others.into_iter().flat_map(|n| n.split(',')));
        names
            .filter_map(|n| n.parse::<ImageName>().ok())
            .any(|n| self.names(&n))
    }

    fn names(&self, n: &ImageName) -> bool {
        match &self.name {
            Some(w) if self.any_tag => {
                w.registry() == n.registry() && w.repository() == n.repository()
            }
            Some(w) => w == n,
            None => false,
        }
    }
}

/// What a subscription has next.
#[derive(Debug)]
pub(crate) enum Next {
    Event(Arc<Record>),
    /// `until` has passed (or hyperd is stopping and the hub is gone).
    End,
    /// The subscriber fell so far behind that this many live events were dropped for it.
    Lost(u64),
}

/// A subscriber's stream of events.
#[derive(Debug)]
pub(crate) struct Subscription {
    replay: VecDeque<Record>,
    live: broadcast::Receiver<Arc<Record>>,
    /// The last sequence number the log gave: live events up to it were replayed already.
    after: u64,
    filter: Arc<Filter>,
    until: Option<i64>,
}

/// Which logged events a subscription replays before the live ones: those from a time on
/// (unix nanoseconds), those after a sequence number (to resume after the last one received),
/// or those both select; none when neither is given.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Start {
    pub(crate) since: Option<i64>,
    pub(crate) after: Option<u64>,
}

impl Start {
    fn replays(self) -> bool {
        self.since.is_some() || self.after.is_some()
    }

    fn keeps(self, r: &Record) -> bool {
        self.since.is_none_or(|t| r.time_unix_nano >= t)
            && self.after.is_none_or(|n| r.sequence > n)
    }
}

impl Subscription {
    /// Events matching `filter`: those logged that `start` selects, then live ones, to `until`
    /// when given.
    pub(crate) async fn open(
        hub: &Hub,
        filter: Filter,
        start: Start,
        until: Option<i64>,
    ) -> std::io::Result<Subscription> {
        let live = hub.live.subscribe();
        let filter = Arc::new(filter);
        let (mut replay, mut after) = (VecDeque::new(), 0);
        if start.replays() {
            let wanted = filter.clone();
            let keep = move |r: &Record| start.keeps(r) && wanted.matches(r);
            let (logged, last) = hub.replay(keep).await?;
            after = last;
            replay.extend(logged);
        }
        Ok(Subscription {
            replay,
            live,
            after,
            filter,
            until,
        })
    }

    /// The next matching event.
    pub(crate) async fn next(&mut self) -> Next {
        // The replay holds only what the filter matched.
        if let Some(r) = self.replay.pop_front() {
            if self.until.is_some_and(|u| r.time_unix_nano >= u) {
                return Next::End;
            }
            return Next::Event(Arc::new(r));
        }
        loop {
            let received = match self.left() {
                // Past `until`: what the receiver holds already, then the end.
                Some(Duration::ZERO) => match self.live.try_recv() {
                    Ok(r) => Ok(r),
                    Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                    Err(TryRecvError::Empty | TryRecvError::Closed) => return Next::End,
                },
                Some(left) => tokio::select! {
                    r = self.live.recv() => r,
                    () = tokio::time::sleep(left) => continue,
                },
                None => self.live.recv().await,
            };
            match received {
                Ok(r) if r.sequence <= self.after => {}
                Ok(r) if self.until.is_some_and(|u| r.time_unix_nano >= u) => return Next::End,
                Ok(r) if self.filter.matches(&r) => return Next::Event(r),
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => return Next::Lost(n),
                Err(RecvError::Closed) => return Next::End,
            }
        }
    }

    /// Whether the subscriber may see who caused `r` (see [`Filter`]).
    pub(crate) fn shows_uid(&self, r: &Record) -> bool {
        self.filter.shows_uid(r)
    }

    /// How long until `until`, if given.
    fn left(&self) -> Option<Duration> {
        let until = self.until?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        Some(Duration::from_nanos(until.saturating_sub(now).max(0) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: Kind, name: &str, digest: &str) -> Record {
        Record {
            sequence: 1,
            time_unix_nano: 1,
            kind,
            digest: digest.to_owned(),
            name: name.to_owned(),
            id: String::new(),
            uid: None,
            attributes: Default::default(),
        }
    }

    #[test]
    fn filters_by_type_and_image() {
        let all = Filter::new(&[], vec![], Some(0)).unwrap();
        assert!(all.matches(&record(Kind::Gc, "", "")));
        let tags = Filter::new(&["tag".into(), "untag".into()], vec![], Some(0)).unwrap();
        assert!(tags.matches(&record(Kind::Untag, "app:1", "")));
        assert!(!tags.matches(&record(Kind::Load, "app:1", "")));
        assert!(Filter::new(&["bogus".into()], vec![], Some(0)).is_err());

        let app = Filter::new(&[], vec!["app".into()], Some(0)).unwrap();
        assert!(app.matches(&record(Kind::Load, "app:1", "")));
        assert!(app.matches(&record(Kind::Load, "docker.io/library/app:2", "")));
        assert!(!app.matches(&record(Kind::Load, "other:1", "")));
        let one = Filter::new(&[], vec!["app:1".into()], Some(0)).unwrap();
        assert!(one.matches(&record(Kind::Tag, "app:1", "")));
        assert!(!one.matches(&record(Kind::Tag, "app:2", "")));
        let by_digest = Filter::new(&[], vec!["sha256:ab".into()], Some(0)).unwrap();
        assert!(by_digest.matches(&record(Kind::Pull, "", "sha256:ab")));
        assert!(!by_digest.matches(&record(Kind::Gc, "", "")));
        let registry = Filter::new(&[], vec!["127.0.0.1:5000/x/app".into()], Some(0)).unwrap();
        assert!(registry.matches(&record(Kind::Push, "127.0.0.1:5000/x/app:v1", "")));
    }

    #[test]
    fn another_user_sees_its_own_events_whole_and_others_without_uid_or_saves() {
        let by = |kind, uid| Record {
            uid,
            ..record(kind, "app:1", "")
        };
        let root = Filter::new(&[], vec![], Some(0)).unwrap();
        let user = Filter::new(&[], vec![], Some(1000)).unwrap();
        let nobody = Filter::new(&[], vec![], None).unwrap();
        for f in [&root, &user, &nobody] {
            assert!(f.matches(&by(Kind::Tag, Some(0))));
            assert!(f.matches(&by(Kind::Gc, None)));
        }
        assert!(root.shows_uid(&by(Kind::Tag, Some(1000))));
        assert!(root.matches(&by(Kind::Save, Some(1000))));
        assert!(user.shows_uid(&by(Kind::Tag, Some(1000))));
        assert!(user.matches(&by(Kind::Save, Some(1000))));
        assert!(!user.shows_uid(&by(Kind::Tag, Some(0))));
        assert!(!user.shows_uid(&by(Kind::Tag, Some(1001))));
        assert!(!user.matches(&by(Kind::Save, Some(0))));
        assert!(!user.matches(&by(Kind::Save, None)));
        assert!(!nobody.shows_uid(&by(Kind::Tag, None)));
        assert!(!nobody.matches(&by(Kind::Save, None)));
    }

    fn tag(hub: &Hub, n: u32) {
        let event = crate::events::Event {
            name: format!("app:{n}"),
            ..Default::default()
        };
        hub.emit(Kind::Tag, Some(0), event);
    }

    fn since(t: i64) -> Start {
        Start {
            since: Some(t),
            after: None,
        }
    }

    fn sequence(next: Next) -> u64 {
        match next {
            Next::Event(r) => r.sequence,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn the_log_then_live_events_none_twice_none_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::open(dir.path()).unwrap();
        (1..=3).for_each(|n| tag(&hub, n));
        let all = || Filter::new(&[], vec![], Some(0)).unwrap();
        let mut replay = Subscription::open(&hub, all(), since(0), None)
            .await
            .unwrap();
        let mut live = Subscription::open(&hub, all(), Start::default(), None)
            .await
            .unwrap();
        (4..=5).for_each(|n| tag(&hub, n));
        for want in 1..=5 {
            assert_eq!(sequence(replay.next().await), want);
        }
        assert_eq!(sequence(live.next().await), 4);
        // A time already past ends the stream after the replay and what was queued before it.
        let past = Some(1);
        let mut ended = Subscription::open(&hub, all(), since(0), past)
            .await
            .unwrap();
        assert!(matches!(ended.next().await, Next::End));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let now = Some(now.as_nanos() as i64);
        let mut bounded = Subscription::open(&hub, all(), since(0), now)
            .await
            .unwrap();
        for want in 1..=5 {
            assert_eq!(sequence(bounded.next().await), want);
        }
        assert!(matches!(bounded.next().await, Next::End));
        // Reopened, the log continues the numbering.
        drop(hub);
        let hub = Hub::open(dir.path()).unwrap();
        tag(&hub, 6);
        let mut reopened = Subscription::open(&hub, all(), since(0), None)
            .await
            .unwrap();
        for want in 1..=6 {
            assert_eq!(sequence(reopened.next().await), want);
        }
        // Resumed after the last one received: the rest of the log, then live, none twice.
        let after = Start {
            since: None,
            after: Some(4),
        };
        let mut resumed = Subscription::open(&hub, all(), after, None).await.unwrap();
        tag(&hub, 7);
        for want in 5..=7 {
            assert_eq!(sequence(resumed.next().await), want);
        }
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_what_it_lost() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::open(dir.path()).unwrap();
        let all = Filter::new(&[], vec![], Some(0)).unwrap();
        let mut slow = Subscription::open(&hub, all, Start::default(), None)
            .await
            .unwrap();
        let over = super::super::LIVE_QUEUED as u32 + 10;
        (1..=over).for_each(|n| tag(&hub, n));
        match slow.next().await {
            Next::Lost(n) => assert_eq!(n, 10),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_name_of_a_load_is_matched() {
        let mut r = record(Kind::Load, "app:1", "");
        r.attributes.insert("names".into(), "app:1,other:2".into());
        assert!(
            Filter::new(&[], vec!["other:2".into()], Some(0))
                .unwrap()
                .matches(&r)
        );
    }
}
