"""The event stage: replay purchase history into `purchases`, validate it, dead-letter bad records."""
