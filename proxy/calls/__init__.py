"""Call handling: the B2BUA call flow and what it records."""
