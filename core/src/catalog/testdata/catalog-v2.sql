-- A schema-version-2 catalog as bakfs wrote it before its values were typed (commit bf96d72):
-- every state, kind, location and outcome string that version stored. Written by the test in
-- make-catalog-v2.rs, dumped with Python's sqlite3 iterdump. Never regenerate it: it stands
-- for the catalogs already in use. catalog-v2.json is the JSON of its records as that version
-- serialized them.
BEGIN TRANSACTION;
CREATE TABLE media (id TEXT PRIMARY KEY NOT NULL, label TEXT NOT NULL UNIQUE,
        repo_id TEXT NOT NULL, fs_uuid TEXT NOT NULL UNIQUE, fs_type TEXT NOT NULL,
        serial TEXT NULL, kind TEXT NOT NULL, pool TEXT NOT NULL, location TEXT NOT NULL,
        capacity INTEGER NOT NULL, retention TEXT NOT NULL, enrolled_ns INTEGER NOT NULL,
        last_seen_ns INTEGER NULL, last_written_ns INTEGER NULL, last_verified_ns INTEGER NULL,
        state TEXT NOT NULL, message TEXT NULL, bytes INTEGER NOT NULL DEFAULT 0);
INSERT INTO "media" VALUES('b4174889885822ae7650c58aeaa8130fa93aadf4e1f390ae53ce0cd5bf96bb10','M0','8c76dc55ea9c9a9f84764ae8fe5dfd8f26dd5e2fbf94d1d53546e010e16995d5','uuid-0','ext4','SER0','usb','offsite','onsite',1073741824,'{"keep_last":3}',1780000000000000000,1780000000000000000,1780000000000000050,1780000000000000050,'enrolled',NULL,400);
INSERT INTO "media" VALUES('b120f5896e94a765be53e2783d1882f8c339f1b1013f7eeedacce4427d182fea','M1','8c76dc55ea9c9a9f84764ae8fe5dfd8f26dd5e2fbf94d1d53546e010e16995d5','uuid-1','ext4',NULL,'disk','offsite','onsite',1073741824,'{"keep_daily":7,"keep_within":"30d"}',1780000000000000000,1780000000000000040,NULL,NULL,'copying','why copying',0);
INSERT INTO "media" VALUES('c5db06d753707d71e833bfaf863c350afe2a261047d9f030b2b9ba9f8acec5f2','M2','8c76dc55ea9c9a9f84764ae8fe5dfd8f26dd5e2fbf94d1d53546e010e16995d5','uuid-2','ext4','SER2','usb','offsite','offsite',1073741824,'{"keep_last":1,"keep_hourly":2,"keep_daily":3,"keep_weekly":4,"keep_monthly":5,"keep_yearly":6,"keep_within":"1y180d"}',1780000000000000000,1780000000000000040,NULL,NULL,'safe to remove','why safe to remove',0);
INSERT INTO "media" VALUES('71674e925ff17cb7367b4f5cb793f9ebc629e0a874d8af0e322b96be126b1f9f','M3','8c76dc55ea9c9a9f84764ae8fe5dfd8f26dd5e2fbf94d1d53546e010e16995d5','uuid-3','ext4',NULL,'disk','offsite','onsite',1073741824,'{"keep_last":3}',1780000000000000000,1780000000000000040,NULL,NULL,'removed during copy','why removed during copy',0);
INSERT INTO "media" VALUES('d870b786a9622723a593e11de1164dc326af679b04c967a8c4aa1a3ff9e0d242','M4','8c76dc55ea9c9a9f84764ae8fe5dfd8f26dd5e2fbf94d1d53546e010e16995d5','uuid-4','ext4','SER4','usb','offsite','offsite',1073741824,'{"keep_daily":7,"keep_within":"30d"}',1780000000000000000,1780000000000000040,NULL,NULL,'failed','why failed',0);
INSERT INTO "media" VALUES('a6ab91fb8473986ba00a56bdab362e7d218f0e30660f286ec6df30bc67f440d6','M5','8c76dc55ea9c9a9f84764ae8fe5dfd8f26dd5e2fbf94d1d53546e010e16995d5','uuid-5','ext4',NULL,'disk','offsite','offsite',1073741824,'{"keep_last":1,"keep_hourly":2,"keep_daily":3,"keep_weekly":4,"keep_monthly":5,"keep_yearly":6,"keep_within":"1y180d"}',1780000000000000000,1780000000000000040,NULL,NULL,'medium full','why medium full',0);
INSERT INTO "media" VALUES('825e42b537070bbd6a890f87a969c512111466ab6a3d989d5cd6f05611e6400e','M6','8c76dc55ea9c9a9f84764ae8fe5dfd8f26dd5e2fbf94d1d53546e010e16995d5','uuid-6','ext4','SER6','usb','offsite','onsite',1073741824,'{"keep_last":3}',1780000000000000000,1780000000000000040,NULL,NULL,'refused','why refused',0);
CREATE TABLE media_files (medium_id TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
        size INTEGER NOT NULL, verified_ns INTEGER NOT NULL, PRIMARY KEY (medium_id, kind, name),
        FOREIGN KEY (medium_id) REFERENCES media(id) ON DELETE CASCADE);
INSERT INTO "media_files" VALUES('b4174889885822ae7650c58aeaa8130fa93aadf4e1f390ae53ce0cd5bf96bb10','config','config',10,1780000000000000050);
INSERT INTO "media_files" VALUES('b4174889885822ae7650c58aeaa8130fa93aadf4e1f390ae53ce0cd5bf96bb10','key','5cbcb0cee824b91866cd67f57a6643ddcb7cd4382029039043513953c759246b',20,1780000000000000050);
INSERT INTO "media_files" VALUES('b4174889885822ae7650c58aeaa8130fa93aadf4e1f390ae53ce0cd5bf96bb10','index','e9c0ba08015769a0c4354594b96ce0dfbf27c9eb534a2f8378508985f732ff6d',30,1780000000000000050);
INSERT INTO "media_files" VALUES('b4174889885822ae7650c58aeaa8130fa93aadf4e1f390ae53ce0cd5bf96bb10','pack','410da8a2863956fc7c4ac02bebe7c8ea3bb686fd1a304bc3ace506d2ac1b478f',100,1780000000000000050);
INSERT INTO "media_files" VALUES('b4174889885822ae7650c58aeaa8130fa93aadf4e1f390ae53ce0cd5bf96bb10','pack','b5e98328130e6ce63ac8ee55ebf80e1aeb5b99b04906cb0d2be351225df04ac7',200,1780000000000000050);
INSERT INTO "media_files" VALUES('b4174889885822ae7650c58aeaa8130fa93aadf4e1f390ae53ce0cd5bf96bb10','snapshot','7b0b40b1727c88b447ee88513f5ea86ef2dd5dca00242957a6117339cef5cbb2',40,1780000000000000050);
CREATE TABLE media_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, medium_id TEXT NOT NULL,
        started_ns INTEGER NOT NULL, ended_ns INTEGER NULL, outcome TEXT NOT NULL,
        snapshots_added INTEGER NOT NULL DEFAULT 0, snapshots_removed INTEGER NOT NULL DEFAULT 0,
        files_written INTEGER NOT NULL DEFAULT 0, bytes_written INTEGER NOT NULL DEFAULT 0,
        bytes_verified INTEGER NOT NULL DEFAULT 0, seconds REAL NOT NULL DEFAULT 0,
        message TEXT NULL,
        FOREIGN KEY (medium_id) REFERENCES media(id) ON DELETE CASCADE);
INSERT INTO "media_runs" VALUES(1,'b4174889885822ae7650c58aeaa8130fa93aadf4e1f390ae53ce0cd5bf96bb10',1780000000000000060,1780000000000000070,'ok',1,2,3,4,5,1.5,NULL);
INSERT INTO "media_runs" VALUES(2,'b4174889885822ae7650c58aeaa8130fa93aadf4e1f390ae53ce0cd5bf96bb10',1780000000000000061,1780000000000000071,'incomplete',1,2,3,4,5,1.5,'incomplete because');
INSERT INTO "media_runs" VALUES(3,'b4174889885822ae7650c58aeaa8130fa93aadf4e1f390ae53ce0cd5bf96bb10',1780000000000000062,1780000000000000072,'failed',1,2,3,4,5,1.5,'failed because');
INSERT INTO "media_runs" VALUES(4,'b4174889885822ae7650c58aeaa8130fa93aadf4e1f390ae53ce0cd5bf96bb10',1780000000000000063,1780000000000000073,'refused',1,2,3,4,5,1.5,'refused because');
INSERT INTO "media_runs" VALUES(5,'b4174889885822ae7650c58aeaa8130fa93aadf4e1f390ae53ce0cd5bf96bb10',1780000000000000064,1780000000000000074,'medium full',1,2,3,4,5,1.5,'medium full because');
INSERT INTO "media_runs" VALUES(6,'b4174889885822ae7650c58aeaa8130fa93aadf4e1f390ae53ce0cd5bf96bb10',1780000000000000065,1780000000000000075,'cancelled',1,2,3,4,5,1.5,'cancelled because');
INSERT INTO "media_runs" VALUES(7,'b4174889885822ae7650c58aeaa8130fa93aadf4e1f390ae53ce0cd5bf96bb10',1780000000000000080,1780000000000000090,'interrupted',0,0,0,0,0,0.0,'the daemon stopped during the run');
INSERT INTO "media_runs" VALUES(8,'b4174889885822ae7650c58aeaa8130fa93aadf4e1f390ae53ce0cd5bf96bb10',1780000000000000100,NULL,'running',0,0,0,0,0,0.0,NULL);
CREATE TABLE media_snapshot_packs (medium_id TEXT NOT NULL, snapshot_id TEXT NOT NULL,
        pack_id TEXT NOT NULL, PRIMARY KEY (medium_id, snapshot_id, pack_id),
        FOREIGN KEY (medium_id, snapshot_id) REFERENCES media_snapshots(medium_id, snapshot_id)
            ON DELETE CASCADE);
INSERT INTO "media_snapshot_packs" VALUES('b4174889885822ae7650c58aeaa8130fa93aadf4e1f390ae53ce0cd5bf96bb10','7b0b40b1727c88b447ee88513f5ea86ef2dd5dca00242957a6117339cef5cbb2','410da8a2863956fc7c4ac02bebe7c8ea3bb686fd1a304bc3ace506d2ac1b478f');
INSERT INTO "media_snapshot_packs" VALUES('b4174889885822ae7650c58aeaa8130fa93aadf4e1f390ae53ce0cd5bf96bb10','7b0b40b1727c88b447ee88513f5ea86ef2dd5dca00242957a6117339cef5cbb2','b5e98328130e6ce63ac8ee55ebf80e1aeb5b99b04906cb0d2be351225df04ac7');
CREATE TABLE media_snapshots (medium_id TEXT NOT NULL, snapshot_id TEXT NOT NULL,
        time_ns INTEGER NOT NULL, host TEXT NOT NULL, paths TEXT NOT NULL, job TEXT NULL,
        verified_ns INTEGER NOT NULL, PRIMARY KEY (medium_id, snapshot_id),
        FOREIGN KEY (medium_id) REFERENCES media(id) ON DELETE CASCADE);
INSERT INTO "media_snapshots" VALUES('b4174889885822ae7650c58aeaa8130fa93aadf4e1f390ae53ce0cd5bf96bb10','7b0b40b1727c88b447ee88513f5ea86ef2dd5dca00242957a6117339cef5cbb2',1780000000000000002,'host1','["/etc","/home/a \"b\""]','etc',1780000000000000050);
CREATE TABLE packs (repo_id TEXT NOT NULL, id TEXT NOT NULL, size INTEGER NOT NULL,
        PRIMARY KEY (repo_id, id));
INSERT INTO "packs" VALUES('8c76dc55ea9c9a9f84764ae8fe5dfd8f26dd5e2fbf94d1d53546e010e16995d5','410da8a2863956fc7c4ac02bebe7c8ea3bb686fd1a304bc3ace506d2ac1b478f',100);
INSERT INTO "packs" VALUES('8c76dc55ea9c9a9f84764ae8fe5dfd8f26dd5e2fbf94d1d53546e010e16995d5','b5e98328130e6ce63ac8ee55ebf80e1aeb5b99b04906cb0d2be351225df04ac7',200);
CREATE TABLE repositories (id TEXT PRIMARY KEY NOT NULL, location TEXT NOT NULL,
        last_seen INTEGER NOT NULL);
INSERT INTO "repositories" VALUES('8c76dc55ea9c9a9f84764ae8fe5dfd8f26dd5e2fbf94d1d53546e010e16995d5','/srv/bakfs',1780000000000000000);
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, repo_id TEXT NOT NULL, job TEXT NULL,
        started_ns INTEGER NOT NULL, ended_ns INTEGER NULL, outcome TEXT NOT NULL,
        files INTEGER NOT NULL, bytes_read INTEGER NOT NULL, bytes_added INTEGER NOT NULL,
        snapshot_id TEXT NULL, message TEXT NULL);
INSERT INTO "runs" VALUES(1,'8c76dc55ea9c9a9f84764ae8fe5dfd8f26dd5e2fbf94d1d53546e010e16995d5','etc',1780000000000000010,1780000000000000020,'ok',1,2,3,'7b0b40b1727c88b447ee88513f5ea86ef2dd5dca00242957a6117339cef5cbb2',NULL);
INSERT INTO "runs" VALUES(2,'8c76dc55ea9c9a9f84764ae8fe5dfd8f26dd5e2fbf94d1d53546e010e16995d5','etc',1780000000000000011,1780000000000000021,'incomplete',1,2,3,'7b0b40b1727c88b447ee88513f5ea86ef2dd5dca00242957a6117339cef5cbb2','incomplete because');
INSERT INTO "runs" VALUES(3,'8c76dc55ea9c9a9f84764ae8fe5dfd8f26dd5e2fbf94d1d53546e010e16995d5','etc',1780000000000000012,1780000000000000022,'failed',1,2,3,NULL,'failed because');
INSERT INTO "runs" VALUES(4,'8c76dc55ea9c9a9f84764ae8fe5dfd8f26dd5e2fbf94d1d53546e010e16995d5',NULL,1780000000000000030,NULL,'running',0,0,0,NULL,NULL);
CREATE TABLE snapshot_packs (repo_id TEXT NOT NULL, snapshot_id TEXT NOT NULL,
        pack_id TEXT NOT NULL, PRIMARY KEY (repo_id, snapshot_id, pack_id),
        FOREIGN KEY (repo_id, snapshot_id) REFERENCES snapshots(repo_id, id) ON DELETE CASCADE);
INSERT INTO "snapshot_packs" VALUES('8c76dc55ea9c9a9f84764ae8fe5dfd8f26dd5e2fbf94d1d53546e010e16995d5','c462b2a17fc97471beb45c15dc2ab9cfd177c70a993f6aace4f56076b2252f3f','410da8a2863956fc7c4ac02bebe7c8ea3bb686fd1a304bc3ace506d2ac1b478f');
INSERT INTO "snapshot_packs" VALUES('8c76dc55ea9c9a9f84764ae8fe5dfd8f26dd5e2fbf94d1d53546e010e16995d5','7b0b40b1727c88b447ee88513f5ea86ef2dd5dca00242957a6117339cef5cbb2','410da8a2863956fc7c4ac02bebe7c8ea3bb686fd1a304bc3ace506d2ac1b478f');
INSERT INTO "snapshot_packs" VALUES('8c76dc55ea9c9a9f84764ae8fe5dfd8f26dd5e2fbf94d1d53546e010e16995d5','7b0b40b1727c88b447ee88513f5ea86ef2dd5dca00242957a6117339cef5cbb2','b5e98328130e6ce63ac8ee55ebf80e1aeb5b99b04906cb0d2be351225df04ac7');
CREATE TABLE snapshots (repo_id TEXT NOT NULL, id TEXT NOT NULL, time TEXT NOT NULL,
        time_ns INTEGER NOT NULL, host TEXT NOT NULL, paths TEXT NOT NULL, tags TEXT NOT NULL,
        tree TEXT NOT NULL, parent TEXT NULL, job TEXT NULL, files INTEGER NOT NULL,
        bytes INTEGER NOT NULL, PRIMARY KEY (repo_id, id));
INSERT INTO "snapshots" VALUES('8c76dc55ea9c9a9f84764ae8fe5dfd8f26dd5e2fbf94d1d53546e010e16995d5','c462b2a17fc97471beb45c15dc2ab9cfd177c70a993f6aace4f56076b2252f3f','2026-05-28T20:26:40Z',1780000000000000001,'host1','["/etc","/home/a \"b\""]','["daily"]','ef40c8071eed5482f209a91f336a225f500d418cbfd5349280853234e6e7c6a7',NULL,'etc',12,3456);
INSERT INTO "snapshots" VALUES('8c76dc55ea9c9a9f84764ae8fe5dfd8f26dd5e2fbf94d1d53546e010e16995d5','7b0b40b1727c88b447ee88513f5ea86ef2dd5dca00242957a6117339cef5cbb2','2026-05-28T20:26:40Z',1780000000000000002,'host1','["/etc","/home/a \"b\""]','["daily"]','d669dc0f182db6cd98d5ea9ef185b175087584b887758e48d7be64d6d2c63e1b','c462b2a17fc97471beb45c15dc2ab9cfd177c70a993f6aace4f56076b2252f3f','etc',12,3456);
CREATE INDEX snapshots_by_time ON snapshots(repo_id, time_ns);
CREATE INDEX snapshot_packs_by_pack ON snapshot_packs(pack_id);
CREATE INDEX runs_by_repo ON runs(repo_id, started_ns);
CREATE INDEX media_runs_by_medium ON media_runs(medium_id, started_ns);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('runs',4);
INSERT INTO "sqlite_sequence" VALUES('media_runs',8);
COMMIT;
PRAGMA user_version=2;
