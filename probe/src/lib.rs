//! The deployment downtime test. Not built yet: see issue 4.
