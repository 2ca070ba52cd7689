-- A schema-version-3 catalog as bakfs wrote it before the file table (schema 4): one repository,
-- one snapshot backed up by that bakfs (of /tmp/v3fix/src), a run, and a medium OFFSITE-1 holding
-- an older snapshot the primary no longer has (its rows added with sqlite3, as bakfs-mediad
-- writes them). Dumped with Python's sqlite3 iterdump. Never regenerate it: it stands for the
-- catalogs in use before schema 4.
BEGIN TRANSACTION;
CREATE TABLE drills (id INTEGER PRIMARY KEY AUTOINCREMENT, repo_id TEXT NOT NULL,
        medium_id TEXT NULL, snapshot_id TEXT NOT NULL, job TEXT NULL,
        started_ns INTEGER NOT NULL, ended_ns INTEGER NULL, outcome TEXT NOT NULL,
        mode TEXT NOT NULL, files INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0,
        seconds REAL NOT NULL DEFAULT 0, ready_seconds REAL NOT NULL DEFAULT 0,
        message TEXT NULL,
        FOREIGN KEY (medium_id) REFERENCES media(id) ON DELETE CASCADE);
CREATE TABLE media (id TEXT PRIMARY KEY NOT NULL, label TEXT NOT NULL UNIQUE,
        repo_id TEXT NOT NULL, fs_uuid TEXT NOT NULL UNIQUE, fs_type TEXT NOT NULL,
        serial TEXT NULL, kind TEXT NOT NULL, pool TEXT NOT NULL, location TEXT NOT NULL,
        capacity INTEGER NOT NULL, retention TEXT NOT NULL, enrolled_ns INTEGER NOT NULL,
        last_seen_ns INTEGER NULL, last_written_ns INTEGER NULL, last_verified_ns INTEGER NULL,
        state TEXT NOT NULL, message TEXT NULL, bytes INTEGER NOT NULL DEFAULT 0, presence TEXT NULL, presence_ns INTEGER NULL, free_bytes INTEGER NULL, free_ns INTEGER NULL, rotate_every_s INTEGER NULL);
INSERT INTO "media" VALUES('b4174889885822ae7650c58aeaa8130fa93aadf4e1f390ae53ce0cd5bf96bb10','OFFSITE-1','32a6fa1346cd38d579c7b3407df5e076ab1034f3fa0b4707cc12049f1377b5dd','uuid-1','ext4',NULL,'usb','offsite','offsite',1073741824,'{"keep_last":3}',1764500000000000000,1764500000000000000,1764500000000000000,1764500000000000000,'safe to remove',NULL,400,'removed',1764500000000000000,NULL,NULL,NULL);
CREATE TABLE media_files (medium_id TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
        size INTEGER NOT NULL, verified_ns INTEGER NOT NULL, PRIMARY KEY (medium_id, kind, name),
        FOREIGN KEY (medium_id) REFERENCES media(id) ON DELETE CASCADE);
CREATE TABLE media_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, medium_id TEXT NOT NULL,
        started_ns INTEGER NOT NULL, ended_ns INTEGER NULL, outcome TEXT NOT NULL,
        snapshots_added INTEGER NOT NULL DEFAULT 0, snapshots_removed INTEGER NOT NULL DEFAULT 0,
        files_written INTEGER NOT NULL DEFAULT 0, bytes_written INTEGER NOT NULL DEFAULT 0,
        bytes_verified INTEGER NOT NULL DEFAULT 0, seconds REAL NOT NULL DEFAULT 0,
        message TEXT NULL,
        FOREIGN KEY (medium_id) REFERENCES media(id) ON DELETE CASCADE);
CREATE TABLE media_snapshot_packs (medium_id TEXT NOT NULL, snapshot_id TEXT NOT NULL,
        pack_id TEXT NOT NULL, PRIMARY KEY (medium_id, snapshot_id, pack_id),
        FOREIGN KEY (medium_id, snapshot_id) REFERENCES media_snapshots(medium_id, snapshot_id)
            ON DELETE CASCADE);
CREATE TABLE media_snapshots (medium_id TEXT NOT NULL, snapshot_id TEXT NOT NULL,
        time_ns INTEGER NOT NULL, host TEXT NOT NULL, paths TEXT NOT NULL, job TEXT NULL,
        verified_ns INTEGER NOT NULL, PRIMARY KEY (medium_id, snapshot_id),
        FOREIGN KEY (medium_id) REFERENCES media(id) ON DELETE CASCADE);
INSERT INTO "media_snapshots" VALUES('b4174889885822ae7650c58aeaa8130fa93aadf4e1f390ae53ce0cd5bf96bb10','6f7e4d3c2b1a09f8e7d6c5b4a3928170f6e5d4c3b2a1908f7e6d5c4b3a291807',1764400000000000000,'oldhost','["/tmp/v3fix/src"]',NULL,1764500000000000000);
CREATE TABLE packs (repo_id TEXT NOT NULL, id TEXT NOT NULL, size INTEGER NOT NULL,
        PRIMARY KEY (repo_id, id));
INSERT INTO "packs" VALUES('32a6fa1346cd38d579c7b3407df5e076ab1034f3fa0b4707cc12049f1377b5dd','2e8ee48f11c94848d6a62a1ebbc5869042f50363e39f8c662dc52c39d12c8d5a',128);
INSERT INTO "packs" VALUES('32a6fa1346cd38d579c7b3407df5e076ab1034f3fa0b4707cc12049f1377b5dd','2fb16711c396b42640d64ed9cd6695fc6d46499c50e7efdac42a5b90e3d4b539',869);
CREATE TABLE repositories (id TEXT PRIMARY KEY NOT NULL, location TEXT NOT NULL,
        last_seen INTEGER NOT NULL);
INSERT INTO "repositories" VALUES('32a6fa1346cd38d579c7b3407df5e076ab1034f3fa0b4707cc12049f1377b5dd','/tmp/v3fix/repo',1796119200928535598);
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, repo_id TEXT NOT NULL, job TEXT NULL,
        started_ns INTEGER NOT NULL, ended_ns INTEGER NULL, outcome TEXT NOT NULL,
        files INTEGER NOT NULL, bytes_read INTEGER NOT NULL, bytes_added INTEGER NOT NULL,
        snapshot_id TEXT NULL, message TEXT NULL);
INSERT INTO "runs" VALUES(1,'32a6fa1346cd38d579c7b3407df5e076ab1034f3fa0b4707cc12049f1377b5dd',NULL,1796119200932074853,1796119200937325604,'ok',1,6,6,'18fe7700bc40dea048c670fa44cd57e09d1d6085f960b098b2d5f3f4e707a2ce',NULL);
CREATE TABLE snapshot_packs (repo_id TEXT NOT NULL, snapshot_id TEXT NOT NULL,
        pack_id TEXT NOT NULL, PRIMARY KEY (repo_id, snapshot_id, pack_id),
        FOREIGN KEY (repo_id, snapshot_id) REFERENCES snapshots(repo_id, id) ON DELETE CASCADE);
INSERT INTO "snapshot_packs" VALUES('32a6fa1346cd38d579c7b3407df5e076ab1034f3fa0b4707cc12049f1377b5dd','18fe7700bc40dea048c670fa44cd57e09d1d6085f960b098b2d5f3f4e707a2ce','2e8ee48f11c94848d6a62a1ebbc5869042f50363e39f8c662dc52c39d12c8d5a');
INSERT INTO "snapshot_packs" VALUES('32a6fa1346cd38d579c7b3407df5e076ab1034f3fa0b4707cc12049f1377b5dd','18fe7700bc40dea048c670fa44cd57e09d1d6085f960b098b2d5f3f4e707a2ce','2fb16711c396b42640d64ed9cd6695fc6d46499c50e7efdac42a5b90e3d4b539');
CREATE TABLE snapshots (repo_id TEXT NOT NULL, id TEXT NOT NULL, time TEXT NOT NULL,
        time_ns INTEGER NOT NULL, host TEXT NOT NULL, paths TEXT NOT NULL, tags TEXT NOT NULL,
        tree TEXT NOT NULL, parent TEXT NULL, job TEXT NULL, files INTEGER NOT NULL,
        bytes INTEGER NOT NULL, PRIMARY KEY (repo_id, id));
INSERT INTO "snapshots" VALUES('32a6fa1346cd38d579c7b3407df5e076ab1034f3fa0b4707cc12049f1377b5dd','18fe7700bc40dea048c670fa44cd57e09d1d6085f960b098b2d5f3f4e707a2ce','2026-12-01T10:00:00Z',1796119200932074853,'vm','["/tmp/v3fix/src"]','[]','868415f67359a1546ce60057daa80a6ac0a98e12a44d3f327a833e75c600863e',NULL,NULL,1,6);
CREATE INDEX snapshots_by_time ON snapshots(repo_id, time_ns);
CREATE INDEX snapshot_packs_by_pack ON snapshot_packs(pack_id);
CREATE INDEX runs_by_repo ON runs(repo_id, started_ns);
CREATE INDEX media_runs_by_medium ON media_runs(medium_id, started_ns);
CREATE INDEX drills_by_medium ON drills(medium_id, id);
CREATE INDEX drills_by_job ON drills(repo_id, job, id);
CREATE INDEX snapshots_by_job ON snapshots(repo_id, job, time_ns);
CREATE INDEX runs_by_job ON runs(repo_id, job, id);
CREATE INDEX media_snapshots_by_snapshot ON media_snapshots(snapshot_id);
CREATE INDEX media_snapshots_by_job ON media_snapshots(job, time_ns);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('runs',1);
COMMIT;
PRAGMA user_version=3;
