package sqlite

// WALRewindSize is walRewindSize, for the tests of package sqlite_test.
const WALRewindSize = walRewindSize
