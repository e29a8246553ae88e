//! The journal: its records on a simulated disk, and the store's writes that only it made durable.

use std::sync::Arc;

use uuid::Uuid;

use super::{HEADER_BYTES, Journal, JournalError, RECORD_HEADER_BYTES};
use crate::storage::backend::StoreFile;
use crate::storage::fault::SimDisk;
use crate::storage::offsets::CommittedOffset;
use crate::storage::tests::{T0, all_batches, as_produced, batch, no_retention, stored_as_produced};
use crate::storage::{AppendError, DocumentWrite, Location, OpenError, Store, StoreConfig, backend};

const CLUSTER: Uuid = Uuid::from_u128(0x5eed);

fn journal_on(disk: &Arc<SimDisk>, cluster: Uuid, bytes: u64) -> Result<(Journal, Vec<super::Record>), JournalError> {
    Journal::open_file(disk.factory()(StoreFile::Journal).unwrap(), cluster, bytes)
}

fn append(journal: &mut Journal, body: &[u8]) {
    let mut record = vec![0; RECORD_HEADER_BYTES];
    record.extend_from_slice(body);
    journal.append(&mut record).unwrap();
    journal.sync().unwrap();
}

fn bodies(records: &[super::Record]) -> Vec<(u64, Vec<u8>)> {
    records.iter().map(|record| (record.seq, record.body.clone())).collect()
}

#[test]
fn records_read_back_in_order_up_to_a_torn_one() {
    let disk = SimDisk::new();
    let (mut journal, records) = journal_on(&disk, CLUSTER, 64 << 10).unwrap();
    assert!(records.is_empty());
    for i in 0..3u8 {
        append(&mut journal, &vec![i; 100 + i as usize]);
    }
    // A fourth record whose last bytes never reached the disk.
    let at = journal.end;
    append(&mut journal, &[9; 300]);
    let file = disk.factory()(StoreFile::Journal).unwrap();
    file.write(at + RECORD_HEADER_BYTES as u64 + 200, &[0; 100]).unwrap();
    drop(journal);

    let (_, records) = journal_on(&disk, CLUSTER, 64 << 10).unwrap();
    let expected: Vec<(u64, Vec<u8>)> = (0..3u8).map(|i| (i as u64 + 1, vec![i; 100 + i as usize])).collect();
    assert_eq!(bodies(&records), expected, "the torn record and nothing after it is read");
}

#[test]
fn a_new_round_never_reads_what_an_older_round_left() {
    let disk = SimDisk::new();
    let (mut journal, _) = journal_on(&disk, CLUSTER, 64 << 10).unwrap();
    for i in 0..6u8 {
        append(&mut journal, &[i; 500]);
    }
    // A checkpoint: the next round overwrites the start with shorter records.
    journal.restart();
    append(&mut journal, &[7; 120]);
    append(&mut journal, &[8; 120]);
    drop(journal);
    let (_, records) = journal_on(&disk, CLUSTER, 64 << 10).unwrap();
    assert_eq!(bodies(&records), vec![(7, vec![7; 120]), (8, vec![8; 120])]);
}

/// A round cut short by a power cut can leave whole records past a torn one (an unsynced tail
/// the disk half kept). After the next open, a new record at the start must not chain into them,
/// even where a reader looks for it on the next page: numbers jump past any the file could hold.
#[test]
fn leftovers_of_a_round_cut_short_never_continue_a_new_one() {
    let disk = SimDisk::new();
    let (mut journal, _) = journal_on(&disk, CLUSTER, 64 << 10).unwrap();
    let mut starts = Vec::new();
    for i in 0..8u8 {
        starts.push(journal.end + super::padding_before(journal.end, 524));
        append(&mut journal, &[i; 500]);
    }
    assert_eq!(starts[7], 2 * super::PAGE_BYTES, "the eighth record starts on a page of its own");
    drop(journal);
    // The seventh record was torn: the eighth, whole, lies past it.
    let file = disk.factory()(StoreFile::Journal).unwrap();
    file.write(starts[6] + 100, &[0xee; 50]).unwrap();
    let (mut journal, records) = journal_on(&disk, CLUSTER, 64 << 10).unwrap();
    assert_eq!(records.len(), 6);
    // What `replay::open` does once the database applied the six: a new round begins.
    journal.resume_after(6, 6);
    journal.restart();
    append(&mut journal, &[9; 3000]);
    drop(journal);
    let (_, records) = journal_on(&disk, CLUSTER, 64 << 10).unwrap();
    assert_eq!(records.len(), 1, "only the new record: the old eighth does not follow it");
    assert_eq!((records[0].prev, &records[0].body), (6, &vec![9; 3000]));
}

#[test]
fn a_journal_of_other_data_or_with_a_damaged_header_is_refused() {
    let disk = SimDisk::new();
    drop(journal_on(&disk, CLUSTER, 16 << 10).unwrap());
    let other = Uuid::from_u128(7);
    assert!(matches!(journal_on(&disk, other, 16 << 10), Err(JournalError::Foreign { found: CLUSTER, .. })));
    let file = disk.factory()(StoreFile::Journal).unwrap();
    file.write(20, &[0xff]).unwrap();
    assert!(matches!(journal_on(&disk, CLUSTER, 16 << 10), Err(JournalError::Header(_))));
    // A journal whose making was cut off before its header was written is made again.
    file.write(0, &[0; HEADER_BYTES as usize]).unwrap();
    assert!(journal_on(&disk, CLUSTER, 16 << 10).is_ok());
}

fn open_store(disk: &Arc<SimDisk>, journal_bytes: u64) -> Result<Store, OpenError> {
    let config = StoreConfig { cache_bytes: 4 << 20, journal_bytes, ..StoreConfig::default() };
    Store::open(Location::Backend(disk.factory()), config)
}

/// Appends, an idempotent producer's state, committed offsets and documents are made durable by
/// the journal alone: after a power cut the database by itself lacks them (no durable redb commit
/// happened), and opening the store replays every one. A deletion in the middle is a durable
/// commit of its own, which ends a round of the journal; it survives as well.
#[tokio::test]
async fn every_kind_of_write_survives_a_power_cut_through_the_journal() {
    let disk = SimDisk::new();
    let store = open_store(&disk, 1 << 20).unwrap();
    store.create_topic("t", 2, no_retention()).await.unwrap();
    let pid = store.allocate_producer_id().await.unwrap();
    let before_deletion = store.append("t", 1, batch(3, 50, T0, 1)).await.unwrap();
    store.append("t", 1, batch(1, 50, T0, 2)).await.unwrap();
    store.delete_records("t", 1, before_deletion.last_offset + 1).await.unwrap();
    let mut acked = Vec::new();
    for i in 0..20u8 {
        let produced = batch(2, 300 + i as usize * 40, T0, i);
        acked.push((store.append("t", 0, produced.clone()).await.unwrap().base_offset, produced));
    }
    let sequenced = crate::storage::tests::sequenced(2, pid, 0, 0);
    let first = store.append("t", 0, sequenced.clone()).await.unwrap();
    let committed = CommittedOffset { offset: 7, leader_epoch: -1, metadata: "m".into(), commit_ms: T0 };
    store.commit_offsets("g", vec![(("t".into(), 0), committed.clone())]).await.unwrap();
    let document = DocumentWrite { kind: "test".into(), name: "doc".into(), document: Some(b"state".to_vec()) };
    store.write_documents(vec![document]).await.unwrap();
    disk.cut_power_after(0);
    store.shutdown().await;
    disk.restore_power(None);

    {
        let db = backend::open_database(&disk.factory(), 1 << 20).unwrap();
        let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
        let rows = txn.open_table(crate::storage::layout::RESOURCES).unwrap();
        assert!(rows.get(("test", "doc")).unwrap().is_none(), "the database alone lacks what the journal kept");
    }
    let store = open_store(&disk, 1 << 20).unwrap();
    for (offset, produced) in &acked {
        assert_eq!(&stored_as_produced(&store, "t", 0, *offset), produced);
    }
    let retried = store.append("t", 0, sequenced).await.unwrap();
    assert_eq!(retried.base_offset, first.base_offset, "the producer's state came back: a retry is no new batch");
    assert_eq!(store.committed_offsets("g")[&("t".to_owned(), 0)], committed);
    assert_eq!(store.resources("test").unwrap(), vec![("doc".to_owned(), b"state".to_vec())]);
    let partition = store.topic("t").unwrap().partitions[1].offsets();
    assert_eq!((partition.log_start_offset, partition.high_watermark), (3, 4), "the deletion stayed");
    store.shutdown().await;
}

/// Many rounds of a small journal, cut at every few operations with torn unsynced writes (a
/// record half on disk, its sync never done): every acknowledged batch comes back byte for byte
/// and nothing unacknowledged is half there.
#[tokio::test]
async fn power_cuts_across_many_journal_rounds_keep_every_acknowledged_batch() {
    for seed in 0..30u64 {
        let disk = SimDisk::new();
        let store = open_store(&disk, 16 << 10).unwrap();
        store.create_topic("t", 1, no_retention()).await.unwrap();
        disk.cut_power_after(30 + seed * 37 % 500);
        let mut acked = Vec::new();
        for i in 0..300u64 {
            let produced = batch(1, 200 + (seed as usize * 131 + i as usize * 57) % 1500, T0, i as u8);
            match store.append("t", 0, produced.clone()).await {
                Ok(at) => acked.push((at.base_offset, produced)),
                Err(AppendError::Storage(_)) => break,
                Err(other) => panic!("seed {seed}: {other}"),
            }
        }
        assert!(disk.is_dead(), "seed {seed}: the power cut came");
        store.shutdown().await;
        disk.restore_power(Some(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1));

        let store = open_store(&disk, 16 << 10).unwrap();
        let stored = all_batches(&store, "t", 0);
        assert!(stored.len() == acked.len() || stored.len() == acked.len() + 1, "seed {seed}");
        for ((offset, produced), (stored_offset, bytes)) in acked.iter().zip(&stored) {
            assert_eq!(
                (offset, produced),
                (stored_offset, &as_produced(bytes)),
                "seed {seed}: acknowledged batch lost"
            );
        }
        store.append("t", 0, batch(1, 10, T0, 0)).await.expect("the store goes on");
        store.shutdown().await;
    }
}

/// Records that would cross a page boundary start on the next page; a reader skips the padding,
/// and records larger than a page still go where they fall.
#[test]
fn small_records_never_cross_a_page_and_padding_is_skipped() {
    let disk = SimDisk::new();
    let (mut journal, _) = journal_on(&disk, CLUSTER, 64 << 10).unwrap();
    let sizes = [1100, 1100, 1100, 1100, 4070, 10, 6000, 2000, 4080, 30];
    let mut starts = Vec::new();
    for (i, len) in sizes.iter().enumerate() {
        let before = journal.end;
        append(&mut journal, &vec![i as u8 + 1; *len]);
        let start = journal.end - (RECORD_HEADER_BYTES + len) as u64;
        starts.push((before, start));
    }
    for ((_, start), len) in starts.iter().zip(sizes) {
        let record = (RECORD_HEADER_BYTES + len) as u64;
        if record <= super::PAGE_BYTES {
            assert_eq!(start / super::PAGE_BYTES, (start + record - 1) / super::PAGE_BYTES, "{len} B at {start}");
        }
    }
    assert!(starts.iter().any(|(before, start)| before != start), "some records were padded");
    drop(journal);
    let (_, records) = journal_on(&disk, CLUSTER, 64 << 10).unwrap();
    let expected: Vec<(u64, Vec<u8>)> =
        sizes.iter().enumerate().map(|(i, len)| (i as u64 + 1, vec![i as u8 + 1; *len])).collect();
    assert_eq!(bodies(&records), expected);
}

/// A data directory written by the build before the journal (format 2; `testdata/README.md` says
/// how it was made) opens with every record and committed offset, is migrated to format 3, gets a
/// journal, and what is appended after the upgrade is there after a restart.
#[tokio::test]
async fn a_data_directory_of_format_2_opens_and_journals() {
    let dir = crate::storage::tests::data_dir_of(include_bytes!("../testdata/format-2.redb.gz"));
    let open = || Store::open(Location::Dir(dir.path().to_owned()), StoreConfig::default()).expect("format 2 opens");

    let store = open();
    let mut values = Vec::new();
    for partition in 0..2 {
        for (_, stored) in all_batches(&store, "readings", partition) {
            for record in rill_core::batch::Batch::parse(&stored).unwrap().records().unwrap() {
                values.push(String::from_utf8(record.unwrap().value.unwrap().to_vec()).unwrap());
            }
        }
    }
    values.sort();
    let mut expected: Vec<String> = (0..12).map(|i| format!("reading-{i}")).collect();
    expected.sort();
    assert_eq!(values, expected);
    let committed = store.committed_offsets("dashboards");
    assert_eq!(
        (committed[&("readings".to_owned(), 0)].offset, committed[&("readings".to_owned(), 0)].metadata.as_str()),
        (4, "seen")
    );
    assert_eq!(committed[&("readings".to_owned(), 1)].offset, 2);
    let appended = store.append("readings", 0, batch(1, 10, T0, 7)).await.unwrap();
    assert_eq!(appended.base_offset, 6);
    store.shutdown().await;
    drop(store);
    assert!(dir.path().join(crate::storage::JOURNAL_FILE_NAME).exists());

    let store = open();
    assert_eq!(store.topic("readings").unwrap().partitions[0].offsets().high_watermark, 7);
    store.shutdown().await;
    drop(store);
    let db = redb::Database::open(dir.path().join(crate::storage::DB_FILE_NAME)).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let meta = txn.open_table(crate::storage::layout::META).unwrap();
    let version = meta.get(crate::storage::layout::FORMAT_VERSION_KEY).unwrap().unwrap().value();
    assert_eq!(version, 3);
}

/// Removing `rill.redb` to start again leaves the old journal behind: the new database replaces
/// it. An existing database refuses a journal of other data instead (the files were mixed up).
#[tokio::test]
async fn a_new_database_replaces_a_journal_left_by_data_that_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let open = || Store::open(Location::Dir(dir.path().to_owned()), StoreConfig::default());
    let store = open().unwrap();
    store.create_topic("t", 1, no_retention()).await.unwrap();
    store.append("t", 0, batch(1, 10, T0, 1)).await.unwrap();
    store.shutdown().await;
    drop(store);
    let journal = dir.path().join(crate::storage::JOURNAL_FILE_NAME);
    let kept = std::fs::read(&journal).unwrap();
    std::fs::remove_file(dir.path().join(crate::storage::DB_FILE_NAME)).unwrap();
    let store = open().expect("a new database opens beside the old journal");
    assert!(store.topic("t").is_none());
    store.shutdown().await;
    drop(store);
    std::fs::write(&journal, kept).unwrap();
    let refused = open().map(drop).expect_err("the journal of other data is refused");
    assert!(matches!(refused, OpenError::Journal(JournalError::Foreign { .. })), "{refused}");
}

/// A commit too large for the journal is a durable redb commit of its own (a checkpoint): it is
/// in the database alone after a power cut, and the small commits journaled before it too.
#[tokio::test]
async fn a_large_commit_is_a_checkpoint() {
    let disk = SimDisk::new();
    let store = open_store(&disk, 1 << 20).unwrap();
    store.create_topic("t", 1, no_retention()).await.unwrap();
    let small = batch(1, 100, T0, 1);
    store.append("t", 0, small.clone()).await.unwrap();
    let large = batch(10, 10_000, T0, 2);
    assert!(large.len() > crate::limits::JOURNAL_RECORD_BYTES_MAX);
    store.append("t", 0, large.clone()).await.unwrap();
    disk.cut_power_after(0);
    store.shutdown().await;
    disk.restore_power(None);
    {
        let db = backend::open_database(&disk.factory(), 1 << 20).unwrap();
        let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
        let rows = txn.open_table(crate::storage::layout::BATCHES).unwrap();
        let bytes: usize = redb::ReadableTable::iter(&rows).unwrap().map(|row| row.unwrap().1.value().len()).sum();
        assert_eq!(bytes, small.len() + large.len(), "the database alone holds both");
    }
    let store = open_store(&disk, 1 << 20).unwrap();
    let stored: Vec<Vec<u8>> = all_batches(&store, "t", 0).into_iter().map(|(_, b)| as_produced(&b)).collect();
    assert_eq!(stored, vec![small, large]);
    store.shutdown().await;
}
