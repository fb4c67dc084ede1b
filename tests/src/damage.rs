//! Damage done to a store behind its back, for the tests of how hyperd reports it.

use std::path::Path;

use redb::ReadableTable;

/// Drops the image record that `tag` (a full name) points at from the metadata database of the
/// store at `root`, which no hyperd may have open, leaving the tag pointing nowhere.
pub fn drop_record(root: &Path, tag: &str) {
    let db = redb::Database::open(root.join("meta.redb")).unwrap();
    let tags: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("tags");
    let images: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("images");
    let tx = db.begin_write().unwrap();
    {
        let table = tx.open_table(tags).unwrap();
        let digest = table.get(tag).unwrap().unwrap().value().to_owned();
        tx.open_table(images)
            .unwrap()
            .remove(digest.as_str())
            .unwrap();
    }
    tx.commit().unwrap();
}
