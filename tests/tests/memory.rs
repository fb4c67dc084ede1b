//! hyperd's memory stays bounded whatever a client sends: header metadata of hundreds of MiB,
//! archives of 100,000 entries, 32 loads at once. Peaks are read from the real daemon's VmHWM.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use integration::TestDaemon;
use integration::fixtures::*;
use integration::tools::p;

/// hyperd's peak for these cases, and the caps the issue set for them.
const HEADER_AND_ENTRY_CAP_MIB: u64 = 128;
const CONCURRENT_CAP_MIB: u64 = 256;

/// Writes a tar header of `entry_type` whose body is `len` bytes of `fill` (framed by `head` and
/// `tail`), streamed to `out` without holding the body.
fn write_extension(
    out: &mut impl Write,
    entry_type: tokio_tar::EntryType,
    head: &[u8],
    len: usize,
    tail: &[u8],
) {
    let size = head.len() + len + tail.len();
    let mut h = tokio_tar::Header::new_ustar();
    h.set_entry_type(entry_type);
    h.set_size(size as u64);
    h.set_path("ext").unwrap();
    h.set_cksum();
    out.write_all(h.as_bytes()).unwrap();
    out.write_all(head).unwrap();
    let chunk = vec![b'v'; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        out.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    out.write_all(tail).unwrap();
    out.write_all(&vec![0u8; size.div_ceil(512) * 512 - size])
        .unwrap();
}

async fn valid_image_archive() -> Vec<u8> {
    let img = Image::new(&["memory"], "amd64", Comp::None).await;
    oci_archive(&[(&img, &[("io.containerd.image.name", "mem:1")])]).await
}

fn assert_refused_unchanged(d: &TestDaemon, file: &Path, expect: &str) {
    let out = d.run(&["load", "-i", p(file)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains(expect), "{stderr}");
    assert_eq!(d.ok(&["images", "-q"]), "");
    assert!(d.ok(&["check"]).contains("0 problems, 0 unreferenced"));
}

#[tokio::test]
async fn huge_header_metadata_is_refused_without_growing_the_daemon() {
    let d = TestDaemon::start();
    let image = valid_image_archive().await;

    // A 512 MiB PAX extended header before the first entry of a valid image.
    let pax = d.path("pax.tar");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&pax).unwrap());
    let len = 512 << 20;
    let head = format!("{} comment=", len + 20);
    let record_len = head.len() + len + 1;
    let head = format!("{record_len} comment=");
    assert_eq!(
        head.len() + len + 1,
        record_len,
        "record length counts itself"
    );
    write_extension(
        &mut f,
        tokio_tar::EntryType::XHeader,
        head.as_bytes(),
        len,
        b"\n",
    );
    f.write_all(&image).unwrap();
    drop(f);
    assert_refused_unchanged(&d, &pax, "byte limit");

    // A 256 MiB GNU long name.
    let long = d.path("longname.tar");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&long).unwrap());
    write_extension(
        &mut f,
        tokio_tar::EntryType::GNULongName,
        b"",
        256 << 20,
        b"\0",
    );
    f.write_all(&image).unwrap();
    drop(f);
    assert_refused_unchanged(&d, &long, "byte limit");

    let peak = d.peak_rss_mib();
    eprintln!("hyperd peak: {peak} MiB");
    assert!(
        peak <= HEADER_AND_ENTRY_CAP_MIB,
        "hyperd peaked at {peak} MiB"
    );
}

#[tokio::test]
async fn an_archive_of_100000_entries_loads_in_bounded_memory() {
    let d = TestDaemon::start();
    let img = Image::new(&["many"], "amd64", Comp::None).await;
    let mut entries = oci_entries(&[(&img, &[("io.containerd.image.name", "many:1")])]);
    // Unreferenced but correctly named blobs, which the image-layout spec allows.
    entries.extend((0..100_000u32).map(|i| Entry::blob(&i.to_le_bytes())));
    let file = d.path("many.tar");
    std::fs::write(&file, tar(&entries).await).unwrap();
    drop(entries);
    assert_eq!(d.ok(&["load", "-q", "-i", p(&file)]), "");
    assert!(d.ok(&["images"]).contains("many"));
    let peak = d.peak_rss_mib();
    eprintln!("hyperd peak: {peak} MiB");
    assert!(
        peak <= HEADER_AND_ENTRY_CAP_MIB,
        "hyperd peaked at {peak} MiB"
    );
    // The unreferenced blobs were never published.
    assert!(d.ok(&["check"]).contains("0 problems, 0 unreferenced"));
}

#[tokio::test]
async fn thirty_two_concurrent_loads_of_64_mib_all_succeed_in_bounded_memory() {
    let d = TestDaemon::start();
    let img = noise_image("concurrent", 4, 16 << 10, None).await;
    let file = d.path("c.tar");
    std::fs::write(
        &file,
        oci_archive(&[(&img, &[("io.containerd.image.name", "c:1")])]).await,
    )
    .unwrap();
    let clients: Vec<_> = (0..32)
        .map(|_| {
            d.ctl()
                .args(["load", "-q", "-i", p(&file)])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in clients {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let peak = d.peak_rss_mib();
    eprintln!("hyperd peak: {peak} MiB");
    assert!(peak <= CONCURRENT_CAP_MIB, "hyperd peaked at {peak} MiB");
    assert!(d.ok(&["check"]).contains("0 problems, 0 unreferenced"));
}
