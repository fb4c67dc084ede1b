//! The policy's rules, each alone and together.

use super::*;

const MIN: Duration = Duration::from_secs(60);

fn d(n: u8) -> Digest {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
        .parse()
        .unwrap()
}

fn at(minutes: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000) + MIN * minutes as u32
}

/// Image `n` named `names`, last used at minute `used` (none: never), keeping `blobs`.
fn image(n: u8, names: &[&str], used: Option<u64>, blobs: &[u8]) -> UsageImage {
    UsageImage {
        digest: d(n),
        id: d(n + 100),
        names: names.iter().map(|s| s.parse().unwrap()).collect(),
        created: None,
        blobs: blobs.iter().map(|b| d(*b)).collect(),
        referrers: 0,
        last_used: used.map(at),
        pinned: false,
    }
}

fn pinned(image: UsageImage) -> UsageImage {
    UsageImage {
        pinned: true,
        ..image
    }
}

fn cx<'a>(
    held: &'a HashSet<Digest>,
    sizes: &'a HashMap<Digest, u64>,
    fs: Option<Filesystem>,
) -> Context<'a> {
    Context {
        now: at(100),
        started: at(80),
        held,
        sizes,
        filesystem: fs,
    }
}

fn summary(steps: &[Step]) -> Vec<(Rule, Digest, Vec<String>)> {
    steps
        .iter()
        .map(|s| {
            let names = s.untag.iter().map(ToString::to_string).collect();
            (s.rule, s.digest.clone(), names)
        })
        .collect()
}

#[test]
fn keep_counts_images_per_repository_and_drops_only_the_older_ones_names() {
    let images = vec![
        image(1, &["app:1", "app:latest"], Some(90), &[1]),
        image(2, &["app:0.9"], Some(80), &[2]),
        // Older in `app`, but also the newest in `other`: only its `app` name goes.
        image(3, &["app:0.8", "other:1"], Some(70), &[3]),
        image(4, &["app:0.7"], None, &[4]),
        pinned(image(5, &["app:0.6"], Some(10), &[5])),
    ];
    let policy = GcPolicy {
        keep: Some(2),
        ..GcPolicy::default()
    };
    let (held, sizes) = (HashSet::new(), HashMap::new());
    let steps = plan(&policy, &images, &cx(&held, &sizes, None)).steps;
    assert_eq!(
        summary(&steps),
        vec![
            (Rule::Keep, d(3), vec!["app:0.8".to_owned()]),
            (Rule::Keep, d(4), vec![]),
        ]
    );
}

#[test]
fn unused_counts_a_never_used_image_from_the_start_and_spares_held_and_recent_ones() {
    let images = vec![
        image(1, &["a:1"], Some(10), &[1]),
        image(2, &[], None, &[2]),
        image(3, &["c:1"], Some(10), &[3]),
        image(4, &["d:1"], Some(99), &[4]),
    ];
    let held = HashSet::from([d(3)]);
    let sizes = HashMap::new();
    let policy = GcPolicy {
        max_unused: Some(MIN * 30),
        min_age: MIN * 5,
        ..GcPolicy::default()
    };
    let steps = plan(&policy, &images, &cx(&held, &sizes, None)).steps;
    assert_eq!(summary(&steps), vec![(Rule::Unused, d(1), vec![])]);
    let late = Context {
        now: at(200),
        ..cx(&held, &sizes, None)
    };
    let gone: Vec<Digest> = plan(&policy, &images, &late)
        .steps
        .into_iter()
        .map(|s| s.digest)
        .collect();
    assert_eq!(gone, [d(1), d(2), d(4)]);
}

#[test]
fn watermark_takes_least_recently_used_first_until_low_is_reached() {
    // 1 and 2 share blob 9; 3 and 4 have their own.
    let images = vec![
        image(1, &["a:1"], Some(20), &[1, 9]),
        image(2, &["b:1"], Some(10), &[2, 9]),
        image(3, &["c:1"], None, &[3]),
        image(4, &["d:1"], Some(30), &[4]),
        pinned(image(5, &["e:1"], Some(5), &[5])),
    ];
    let sizes: HashMap<Digest, u64> = [(1, 10), (2, 10), (3, 10), (4, 10), (5, 10), (9, 50)]
        .map(|(n, s)| (d(n), s))
        .into();
    let held = HashSet::new();
    let marks = Watermarks { high: 80, low: 50 };
    let policy = GcPolicy {
        watermarks: Some(marks),
        ..GcPolicy::default()
    };
    // 90 of 100 used: 40 to free. 3 (never used) frees 10, 2 frees 10 (9 is shared), 1
    // frees 10 and then 9's 50.
    let fs = Filesystem {
        size: 100,
        available: 10,
    };
    let steps = plan(&policy, &images, &cx(&held, &sizes, Some(fs))).steps;
    let order: Vec<Digest> = steps.iter().map(|s| s.digest.clone()).collect();
    assert_eq!(order, [d(3), d(2), d(1)]);
    assert!(steps.iter().all(|s| s.rule == Rule::Watermark));

    // At or under the high mark nothing goes.
    let fs = Filesystem {
        size: 100,
        available: 20,
    };
    assert!(
        plan(&policy, &images, &cx(&held, &sizes, Some(fs)))
            .steps
            .is_empty()
    );
}

#[test]
fn what_earlier_rules_free_counts_toward_the_watermark() {
    let images = vec![
        image(1, &["a:1"], Some(10), &[1]),
        image(2, &["a:2"], Some(20), &[2]),
        image(3, &["b:1"], Some(15), &[3]),
    ];
    let sizes: HashMap<Digest, u64> = [(1, 30), (2, 30), (3, 30)].map(|(n, s)| (d(n), s)).into();
    let held = HashSet::new();
    let policy = GcPolicy {
        keep: Some(1),
        watermarks: Some(Watermarks { high: 80, low: 60 }),
        ..GcPolicy::default()
    };
    let fs = Filesystem {
        size: 100,
        available: 10,
    };
    // keep takes a:1 (30 freed of the 30 needed), so the watermark takes nothing more.
    let steps = plan(&policy, &images, &cx(&held, &sizes, Some(fs))).steps;
    assert_eq!(summary(&steps), vec![(Rule::Keep, d(1), vec![])]);
}

/// The steps of `--gc-keep 1 --gc-max-unused 30m` at minute 100.
fn keep_one_and_unused_for_30_minutes(images: &[UsageImage]) -> Vec<Step> {
    let (held, sizes) = (HashSet::new(), HashMap::new());
    let policy = GcPolicy {
        keep: Some(1),
        max_unused: Some(MIN * 30),
        ..GcPolicy::default()
    };
    plan(&policy, images, &cx(&held, &sizes, None)).steps
}

#[test]
fn an_image_a_later_rule_removes_whole_gets_no_untag_first() {
    // 1 is the older of app's two images, and also named other:1: keep would drop app:1 only,
    // but unused removes it whole, so its one step is unused's.
    let images = vec![
        image(1, &["app:1", "other:1"], Some(10), &[1]),
        image(2, &["app:2"], Some(99), &[2]),
    ];
    let steps = keep_one_and_unused_for_30_minutes(&images);
    assert_eq!(summary(&steps), vec![(Rule::Unused, d(1), vec![])]);
}

#[test]
fn the_watermark_takes_what_it_may_and_tells_what_it_wanted() {
    // 90 of 100 used, 40 to free to reach 50, and only 2 (10 bytes) may go: 1 is pinned.
    let images = vec![
        pinned(image(1, &["a:1"], Some(10), &[1])),
        image(2, &["b:1"], Some(20), &[2]),
    ];
    let sizes: HashMap<Digest, u64> = [(1, 60), (2, 10)].map(|(n, s)| (d(n), s)).into();
    let held = HashSet::new();
    let policy = GcPolicy {
        watermarks: Some(Watermarks { high: 80, low: 50 }),
        ..GcPolicy::default()
    };
    let fs = Filesystem {
        size: 100,
        available: 10,
    };
    let plan = plan(&policy, &images, &cx(&held, &sizes, Some(fs)));
    assert_eq!(summary(&plan.steps), vec![(Rule::Watermark, d(2), vec![])]);
    assert_eq!(plan.excess, 40);
}

#[test]
fn keep_ranks_only_what_unused_leaves_and_records_the_newer_images() {
    // a is old enough for unused; b has no recorded use (counted from the start for unused,
    // least recent for keep). Without unused first, keep would take b for a, which unused takes.
    let images = vec![
        image(1, &["app:a"], Some(10), &[1]),
        image(2, &["app:b"], None, &[2]),
        image(3, &["other:1"], Some(95), &[3]),
        image(4, &["other:2"], Some(90), &[4]),
    ];
    let steps = keep_one_and_unused_for_30_minutes(&images);
    assert_eq!(
        summary(&steps),
        vec![(Rule::Unused, d(1), vec![]), (Rule::Keep, d(4), vec![])]
    );
    let other = "docker.io/library/other".to_owned();
    assert_eq!(steps[1].newer, vec![(other, vec![d(3)])]);
}
