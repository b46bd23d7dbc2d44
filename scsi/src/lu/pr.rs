//! Reservations (placeholder, being written).
