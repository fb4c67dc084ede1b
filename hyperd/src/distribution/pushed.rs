//! Push rights, and what was pushed under each repository that no image of it uses yet: blobs
//! uploaded or mounted, manifests pushed by digest (an index's children, before the index). The
//! store holds them by the shared lease of the hour (one to two hours); they are seen under
//! that repository for as long, so a client reads back what it pushed before its tag arrives,
//! and another repository still never sees them.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use store::Digest;
use tokio::sync::{Semaphore, SemaphorePermit};

/// How long a pushed blob is seen under its repository: as long as its lease holds it at most.
const SEEN_FOR: Duration = Duration::from_secs(2 * 3600);
/// Pushed blobs remembered at once; past this, until older ones age out, a blob pushed is
/// stored but not seen under its repository before an image uses it.
const MAX_REMEMBERED: usize = 100_000;

/// Pieces of pushed bytes the store writes at once (a manifest's whole body counts as one); the
/// others wait their turn.
const PUSH_SLOTS: usize = 16;

/// How often a full table is swept for what aged out: a sweep reads every entry.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// `--registry-push`: who may push, and what they pushed.
pub(super) struct Push {
    /// The users of the htpasswd file who may push; `None`: every user (or anyone, without a
    /// file).
    users: Option<HashSet<String>>,
    pushed: Mutex<Pushed>,
    slots: Semaphore,
    /// How long a push's body may send nothing.
    pub(super) stall: Duration,
}

impl Push {
    pub(super) fn new(users: Option<HashSet<String>>, stall: Duration) -> Self {
        Push {
            users,
            pushed: Mutex::default(),
            slots: Semaphore::new(PUSH_SLOTS),
            stall,
        }
    }

    /// A turn to write a piece of a push, or to read a manifest's body.
    pub(super) async fn turn(&self) -> SemaphorePermit<'_> {
        self.slots
            .acquire()
            .await
            .expect("push slots are never closed")
    }

    /// Whether `user` (`None` without an htpasswd file) may push.
    pub(super) fn may_push(&self, user: Option<&str>) -> bool {
        match (&self.users, user) {
            (None, _) => true,
            (Some(users), Some(user)) => users.contains(user),
            (Some(_), None) => false,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Pushed> {
        self.pushed.lock().expect("pushed lock poisoned")
    }

    /// `digest` was pushed under `repository`.
    pub(super) fn note(&self, repository: &str, digest: &Digest) {
        let mut table = self.table();
        if table.count >= MAX_REMEMBERED
            && table.forgot.is_none_or(|at| at.elapsed() >= FORGET_EVERY)
        {
            table.forget_old();
        }
        if table.count >= MAX_REMEMBERED {
            tracing::debug!(%digest, repository, "too many pushed blobs remembered");
            return;
        }
        let blobs = table
            .by_repository
            .entry(repository.to_owned())
            .or_default();
        let added = blobs.insert(digest.clone(), Instant::now()).is_none();
        table.count += usize::from(added);
    }

    /// Whether `digest` was pushed under `repository` recently enough to be held still.
    pub(super) fn has(&self, repository: &str, digest: &Digest) -> bool {
        self.table()
            .by_repository
            .get(repository)
            .and_then(|blobs| blobs.get(digest))
            .is_some_and(|at| at.elapsed() < SEEN_FOR)
    }

    /// Whether anything was pushed under `repository` recently enough to be held still: the
    /// repository exists before its first tag.
    pub(super) fn has_repository(&self, repository: &str) -> bool {
        self.table()
            .by_repository
            .get(repository)
            .is_some_and(|blobs| blobs.values().any(|at| at.elapsed() < SEEN_FOR))
    }
}

/// The pushed blobs by repository, and how many in all.
#[derive(Default)]
struct Pushed {
    by_repository: HashMap<String, HashMap<Digest, Instant>>,
    count: usize,
    /// When the table was last swept.
    forgot: Option<Instant>,
}

impl Pushed {
    fn forget_old(&mut self) {
        for blobs in self.by_repository.values_mut() {
            blobs.retain(|_, at| at.elapsed() < SEEN_FOR);
        }
        self.by_repository.retain(|_, blobs| !blobs.is_empty());
        self.count = self.by_repository.values().map(HashMap::len).sum();
        self.forgot = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_follow_the_listed_users() {
        let anyone = Push::new(None, Duration::from_secs(1));
        assert!(anyone.may_push(None) && anyone.may_push(Some("ann")));
        let listed = Push::new(
            Some(HashSet::from(["ann".to_owned()])),
            Duration::from_secs(1),
        );
        assert!(listed.may_push(Some("ann")));
        assert!(!listed.may_push(Some("bob")) && !listed.may_push(None));
    }

    #[test]
    fn a_push_is_seen_under_its_repository_only() {
        let push = Push::new(None, Duration::from_secs(1));
        let d = Digest::of(b"layer");
        push.note("docker.io/library/a", &d);
        assert!(push.has("docker.io/library/a", &d));
        assert!(!push.has("docker.io/library/b", &d));
        assert!(!push.has("docker.io/library/a", &Digest::of(b"other")));
        assert!(push.has_repository("docker.io/library/a"));
        assert!(!push.has_repository("docker.io/library/b"));
    }
}
