"""KServe's Python model server with the smallest custom Model that loads the joblib file,
as KServe's "custom model" documentation writes it; answers V1 and V2.

Runs in the kserve peer's virtual environment:
    python kserve_model.py --model_name iris --model_path model.joblib --http_port P --workers N
"""

import argparse
import uuid
from typing import Any

import joblib
import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server


class SKLearnModel(Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        self.model = joblib.load(self.path)
        self.ready = True
        return self.ready

    def predict(self, payload: Any, headers: Any = None) -> Any:
        if isinstance(payload, InferRequest):
            predictions = self.model.predict(payload.inputs[0].as_numpy())
            output = InferOutput(name="predict", shape=list(predictions.shape), datatype="INT64")
            output.set_data_from_numpy(predictions, binary_data=False)
            return InferResponse(
                model_name=self.name,
                infer_outputs=[output],
                response_id=payload.id or str(uuid.uuid4()),
            )
        return {"predictions": self.model.predict(np.asarray(payload["instances"])).tolist()}


parser = argparse.ArgumentParser(parents=[model_server.parser])
parser.add_argument("--model_path", required=True)
args, _ = parser.parse_known_args()

if __name__ == "__main__":
    ModelServer().start([SKLearnModel(args.model_name, args.model_path)])
