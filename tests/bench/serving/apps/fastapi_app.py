"""The floor: the smallest FastAPI app that serves the model over KServe V1, run by uvicorn.

Runs in the fastapi peer's virtual environment:
    BENCH_MODEL=model.joblib uvicorn fastapi_app:app --workers N
"""

import os

import joblib
import numpy as np
from fastapi import FastAPI, Request

model = joblib.load(os.environ["BENCH_MODEL"])
app = FastAPI()


@app.post("/v1/models/{name}:predict")
async def predict(name: str, request: Request) -> dict[str, list[int]]:
    payload = await request.json()
    return {"predictions": model.predict(np.asarray(payload["instances"])).tolist()}
