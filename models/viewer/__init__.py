"""The live web viewer (viser): models/viewer/server.py; adapter.py opens runs and renders."""
