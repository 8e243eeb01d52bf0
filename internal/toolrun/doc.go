// Package toolrun runs the migration tools whose directories the worker reads in place, goose,
// golang-migrate and dbmate, against a real PostgreSQL database, and holds a directory of
// migrations in each one's format (Fixture, FixtureNext). A test applies one directory through
// the worker and through the tool (Apply, or Goose, Migrate, Dbmate) and compares the two
// schemas (SchemaDump). Only tests use it.
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
// # The fixtures
//
// testdata/<format>/ holds the same small billing application in each tool's own syntax, from
// an empty database to one final schema, the same for the four formats (TestFixturesEndInOneSchema):
// enum types and values added to them, a sequence, a partitioned table, plpgsql functions and
// triggers with semicolons inside dollar quotes, a BEGIN ATOMIC function, views and a
// materialized view, a domain, a generated column, check and foreign key constraints added NOT
// VALID and validated, comments, data backfills, a renamed and a dropped column, indexes built
// CONCURRENTLY, and a schema of its own. Every migration has a down that takes the database
// back to empty. testdata/<format>-next/ is the same with one more migration.
package toolrun
