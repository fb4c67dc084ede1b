//! The calls the operations make once they have succeeded, one line at each site: each turns
//! what the operation returned into events. They do nothing before the hub is started.

use std::collections::{BTreeMap, BTreeSet};

use store::{Collected, Created, Digest, Enforced, ImageName, Loaded, Pruned, Removed, SaveItem};
use tokio::sync::broadcast::{self, error::RecvError};

use super::{Event, Kind, hub};
use crate::registry::Pulled;

fn emit(kind: Kind, uid: Option<u32>, event: Event) {
    if let Some(hub) = hub() {
        hub.emit(kind, uid, event);
    }
}

fn attributes<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Names a `load` event lists in `names`: an archive may give one image thousands, and an
/// event stays a short line.
const NAMES_LISTED: usize = 32;

/// A load: one `load` per image, named by its first name (`names` lists the first
/// [`NAMES_LISTED`] when it has more than one).
pub(crate) fn loaded(uid: Option<u32>, loaded: &Loaded) {
    for image in &loaded.images {
        let mut attributes = BTreeMap::new();
        if image.names.len() > 1 {
            let listed = image.names.iter().take(NAMES_LISTED);
            let names: Vec<String> = listed.map(ToString::to_string).collect();
            attributes.insert("names".to_owned(), names.join(","));
        }
        let event = Event {
            digest: image.digest.to_string(),
            name: image
                .names
                .first()
                .map(ToString::to_string)
                .unwrap_or_default(),
            id: image.id.to_string(),
            attributes,
        };
        emit(Kind::Load, uid, event);
    }
}

fn digest_text(digest: Option<&Digest>) -> String {
    digest.map(ToString::to_string).unwrap_or_default()
}

/// A save: one `save` per image asked for, by the name (or ID) it was asked by, with the
/// digest the save resolved it to (`digests`, in the same order: [`store::SaveJob::digests`]).
pub(crate) fn saved(uid: Option<u32>, items: &[SaveItem], digests: &[Digest]) {
    for (i, item) in items.iter().enumerate() {
        let event = Event {
            digest: digest_text(digests.get(i)),
            name: item.image.clone(),
            ..Event::default()
        };
        emit(Kind::Save, uid, event);
    }
}

/// A tag: `target` now names what `source` named, the image `digest` when it was looked up.
pub(crate) fn tagged(uid: Option<u32>, source: &str, target: &ImageName, digest: Option<Digest>) {
    let event = Event {
        digest: digest_text(digest.as_ref()),
        name: target.to_string(),
        attributes: attributes([("source", source.to_owned())]),
        ..Event::default()
    };
    emit(Kind::Tag, uid, event);
}

/// A removal's steps, in docker's order: `untag` per name, `delete` per image (by ID), a
/// `referrer` removed per referrer deleted with its subject. A removal removes one image:
/// `digest`, when the caller looked it up, goes on its `untag` and `delete` events.
pub(crate) fn removed(uid: Option<u32>, digest: Option<&Digest>, removed: &[Removed]) {
    for (kind, event) in removal_events(digest, removed) {
        emit(kind, uid, event);
    }
}

fn removal_events<'a>(
    digest: Option<&'a Digest>,
    removed: &'a [Removed],
) -> impl Iterator<Item = (Kind, Event)> + 'a {
    removed.iter().map(move |r| match r {
        Removed::Untagged(name) => (
            Kind::Untag,
            Event {
                digest: digest_text(digest),
                name: name.to_string(),
                ..Event::default()
            },
        ),
        Removed::Deleted(id) => (
            Kind::Delete,
            Event {
                digest: digest_text(digest),
                id: id.to_string(),
                ..Event::default()
            },
        ),
        Removed::Referrer(digest) => (
            Kind::Referrer,
            Event {
                digest: digest.to_string(),
                attributes: attributes([("action", "removed".to_owned())]),
                ..Event::default()
            },
        ),
    })
}

/// A pass of the daemon's GC policy that did something: each step's removal events, with the
/// rule that decided it as `policy`, then one `prune` with `policy` (the rules that acted),
/// the images removed, the tags dropped and the bytes freed. hyperd caused it: no uid.
pub(crate) fn enforced(enforced: &Enforced) {
    if enforced.steps.is_empty() {
        return;
    }
    let mut rules = BTreeSet::new();
    let (mut images, mut untagged, mut bytes) = (0, 0, 0);
    for step in &enforced.steps {
        rules.insert(step.rule.as_str());
        bytes += step.freed;
        for (kind, mut event) in removal_events(Some(&step.digest), &step.removed) {
            match kind {
                Kind::Delete => images += 1,
                Kind::Untag => untagged += 1,
                _ => {}
            }
            let rule = step.rule.as_str().to_owned();
            event.attributes.insert("policy".to_owned(), rule);
            emit(kind, None, event);
        }
    }
    let rules: Vec<&str> = rules.into_iter().collect();
    let event = Event {
        attributes: attributes([
            ("policy", rules.join(",")),
            ("images", images.to_string()),
            ("untagged", untagged.to_string()),
            ("bytes", bytes.to_string()),
        ]),
        ..Event::default()
    };
    emit(Kind::Prune, None, event);
}

/// A prune: what each removal did, then one `prune` with the images removed and bytes freed.
/// A dry run changed nothing and tells nothing.
pub(crate) fn pruned(uid: Option<u32>, pruned: &Pruned, dry_run: bool) {
    if dry_run {
        return;
    }
    for (digest, steps) in &pruned.removed {
        removed(uid, Some(digest), steps);
    }
    let event = Event {
        attributes: attributes([
            ("images", pruned.images.len().to_string()),
            ("bytes", pruned.freed.to_string()),
        ]),
        ..Event::default()
    };
    emit(Kind::Prune, uid, event);
}

/// A CreateImage, or a manifest pushed to the registry endpoint (by the htpasswd `user`, when
/// it asks for one, told in the attribute `user`): `create` for an image, `referrer` added for
/// a referrer.
pub(crate) fn created(uid: Option<u32>, user: Option<&str>, created: &Created) {
    let (kind, mut event) = match created {
        Created::Image(image) => (
            Kind::Create,
            Event {
                digest: image.digest.to_string(),
                name: image
                    .names
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                id: image.id.to_string(),
                ..Event::default()
            },
        ),
        Created::Referrer(r) => (
            Kind::Referrer,
            Event {
                digest: r.digest.to_string(),
                attributes: attributes([
                    ("action", "added".to_owned()),
                    ("subject", r.subject.to_string()),
                ]),
                ..Event::default()
            },
        ),
    };
    if let Some(user) = user {
        event.attributes.insert("user".to_owned(), user.to_owned());
    }
    emit(kind, uid, event);
}

/// A pull from a registry.
pub(crate) fn pulled(uid: Option<u32>, p: &Pulled) {
    let event = Event {
        digest: p.digest.to_string(),
        name: p.name.as_ref().map(ToString::to_string).unwrap_or_default(),
        id: p.id.as_ref().map(ToString::to_string).unwrap_or_default(),
        attributes: attributes([
            ("blobs", p.downloaded.to_string()),
            ("bytes", p.downloaded_bytes.to_string()),
        ]),
    };
    emit(Kind::Pull, uid, event);
}

/// A push to a registry: `name` where it went, the pushed document's `digest`, and the blobs
/// it `uploaded` (those the registry lacked).
pub(crate) fn pushed(uid: Option<u32>, name: &ImageName, digest: &Digest, uploaded: u32) {
    let event = Event {
        digest: digest.to_string(),
        name: name.to_string(),
        attributes: attributes([("blobs", uploaded.to_string())]),
        ..Event::default()
    };
    emit(Kind::Push, uid, event);
}

/// Reports each of the store's collections that freed blobs as a `gc`, until the store is gone.
pub(super) async fn collections(mut told: broadcast::Receiver<Collected>) {
    loop {
        match told.recv().await {
            Ok(c) => {
                let event = Event {
                    attributes: attributes([
                        ("blobs", c.blobs.to_string()),
                        ("bytes", c.bytes.to_string()),
                    ]),
                    ..Event::default()
                };
                emit(Kind::Gc, None, event);
            }
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "collections not reported as events");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// `hyperctl pin` or `unpin` of the image `digest`.
pub(crate) fn pinned(uid: Option<u32>, digest: &Digest, pinned: bool) {
    let event = Event {
        digest: digest.to_string(),
        ..Event::default()
    };
    emit(if pinned { Kind::Pin } else { Kind::Unpin }, uid, event);
}
