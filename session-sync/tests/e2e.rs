//! End-to-end tests in Chromium (being written).
