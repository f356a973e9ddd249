"""Helpers the tests share: live servers, fakes, Docker, waiting on state; no tests here."""
