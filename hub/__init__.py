"""edgeloop's hub: one HTTP service for devices (uploads, heartbeats), operators (fleet) and releases.

FastAPI on SQLAlchemy (SQLite by default, PostgreSQL by URL). ``hub.app.create_app`` builds it;
``edgeloop hub serve`` runs it with uvicorn. Importing this package does nothing heavy.
"""
