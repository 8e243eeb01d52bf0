// Package migrations embeds goose's migrations; goose ignores a .go file that is not named like a migration.
package migrations
