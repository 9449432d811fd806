"""FastAPI app: routers by domain, pydantic schemas, dependencies. Logic lives in small service modules."""
