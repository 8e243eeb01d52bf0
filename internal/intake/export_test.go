package intake

// ServerAtLeast exposes serverAtLeast to the tests of package intake_test.
var ServerAtLeast = serverAtLeast
