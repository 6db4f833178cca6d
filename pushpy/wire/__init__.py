"""Wire codecs: pure functions from events to bytes and from requests to parameters."""
