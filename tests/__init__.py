"""edgeloop tests: unit tests of pure functions and integration tests with the real parts."""
