"""The ceiling of the stack for benchmarks/serving.py: FastAPI under uvicorn, as ``flywheel
serve`` runs it (one process, same log settings), answering ``POST /predict`` with a constant.

    python benchmarks/_constant_app.py PORT
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

app = FastAPI()
ANSWER = {"prediction_id": "0" * 32, "score": 0.5, "decision": 0}


@app.post("/predict")
async def predict() -> JSONResponse:
    return JSONResponse(ANSWER)


@app.get("/health")
async def health() -> JSONResponse:
    return JSONResponse({"status": "ok"})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                access_log=False)  # fmt: skip
