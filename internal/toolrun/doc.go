// Package toolrun runs the migration tools whose directories the worker reads in place, goose,
// golang-migrate, dbmate and Flyway, against a real PostgreSQL database, and holds a directory
// of migrations in each one's format (Fixture, FixtureNext). A test applies one directory
// through the worker and through the tool (Apply, or Goose, Migrate, Dbmate, Flyway) and
// compares the two schemas (SchemaDump). Only tests use it.
//
// # The tools
//
// goose (GooseVersion) and golang-migrate (MigrateVersion) are built with go install from the
// Go module proxy; dbmate (DbmateVersion) is not on the proxy and comes prebuilt from its npm
// package, @dbmate/<os>-<arch>, fetched with npm pack. Each is installed once per machine into
// os.UserCacheDir()/confiture-toolrun/<tool>-<version>/ and at most once per process; processes
// that install at once each rename a whole program into place. The first build of goose takes
// about two minutes on two cores with an empty module cache; later runs reuse the program.
// The tools run with the cache directory as their working directory and without GOOSE_*,
// DBMATE_* and DATABASE_URL in their environment, so nothing but their command line steers
// them.
//
// # The Flyway stand-in
//
// Flyway is a Java program whose jars come from Maven Central, which this machine cannot reach,
// so Flyway runs a stand-in written here from Flyway Community's code for PostgreSQL (read in
// flyway/flyway: DbMigrate, MigrationVersion, ChecksumCalculator, ParserSqlScript,
// PostgreSQLParser, PostgreSQLDatabase, PostgreSQLSchema, PostgreSQLAdvisoryLockTemplate). It
// reproduces, for `flyway migrate` with the default configuration and
// postgresql.transactional.lock=false:
//
//   - discovery of versioned migrations V<version>__<description>.sql anywhere under the
//     location, recursively; other files (undo migrations U…, which Flyway Community ignores,
//     notes) are ignored, and names that do not parse are skipped, as Flyway does unless
//     validateMigrationNaming is set; two files of one version are an error;
//   - MigrationVersion: '_' in a version reads as '.', numbers compare as numbers, trailing
//     zeros do not count (1 = 1.0, 1.2 < 1.10 < 2); the history records the version with '_'
//     as '.' and the description with '_' as ' ';
//   - the schema history table flyway_schema_history in the connection's current schema, with
//     Flyway's DDL for PostgreSQL (its primary key flyway_schema_history_pk and its index
//     flyway_schema_history_s_idx on success), and Flyway's refusal to create it in a schema
//     that already holds tables, views, sequences, types or routines (it would need baseline);
//   - the checksum, FlywayChecksum: CRC-32 of the lines without their terminators, a BOM
//     dropped, as a signed integer, so line endings do not change it;
//   - validation before migrating (validateOnMigrate): failed migrations, applied migrations
//     missing on disk, changed checksums, descriptions or types, and migrations older than the
//     latest applied one that were never applied are errors, with Flyway's messages;
//   - placeholder replacement of ${…} in the script text before it is parsed (Flyway's
//     built-in flyway:defaultSchema, flyway:user, flyway:database, flyway:timestamp,
//     flyway:filename, flyway:workingDirectory, flyway:table, flyway:environment; any other name
//     is an error, as a placeholder without a value is in Flyway);
//   - statements cut as Flyway's PostgreSQL parser cuts them (comments, quotes, dollar quotes,
//     BEGIN ATOMIC bodies) and run one by one; the per-script configuration V…sql.conf
//     (executeInTransaction, placeholderReplacement, encoding=UTF-8);
//   - each migration in its own transaction together with its history row, unless its
//     configuration says executeInTransaction=false or Flyway's parser finds a statement that
//     cannot run in one (CREATE/DROP INDEX CONCURRENTLY, VACUUM, ALTER SYSTEM, …): then without
//     a transaction, and a mix of the two without a configuration is Flyway's error;
//   - on failure: a transactional migration rolls back with its row, so the history does not
//     mention it ("Changes successfully rolled back"); a non-transactional one keeps what ran
//     and gets a row with success = false, which the next run refuses until repaired;
//   - before each migration, the session's role and search_path as they were when the run
//     began, the default schema first; installed_by is that role; Flyway's advisory lock number.
//
// It does not reproduce: other commands than migrate and validate (no info, clean, baseline,
// repair, undo), configuration (schemas, table, placeholders, outOfOrder, baselineOnMigrate,
// group, mixed, cherryPick…), repeatable migrations (R__) and SQL callbacks, which it refuses
// rather than skip, Java migrations, COPY … FROM STDIN, encodings other than UTF-8, the JDBC
// driver's session (pgjdbc sets the session TimeZone to the JVM's, which changes how a
// timestamp literal without an offset is read), and Flyway's default transactional lock, with
// which Flyway 9.1.2 and later hang on a CREATE INDEX CONCURRENTLY migration (flyway/flyway
// issues 3497, 3508, 3840) until postgresql.transactional.lock=false is set.
//
// # The fixtures
//
// testdata/<format>/ holds the same small billing application in each tool's own syntax, from
// an empty database to one final schema, the same for the four formats (TestFixturesEndInOneSchema):
// enum types and values added to them, a sequence, a partitioned table, plpgsql functions and
// triggers with semicolons inside dollar quotes, a BEGIN ATOMIC function, views and a
// materialized view, a domain, a generated column, check and foreign key constraints added NOT
// VALID and validated, comments, data backfills, a renamed and a dropped column, indexes built
// CONCURRENTLY, and a schema of its own. Every migration has a down (goose, golang-migrate,
// dbmate) or an undo script (Flyway U…, which the stand-in does not run) that takes the
// database back to empty. testdata/<format>-next/ is the same with one more migration.
package toolrun
