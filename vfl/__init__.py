"""vfl: vertical federated logistic and linear regression.

Party A and party B hold different columns about the same people; with an
arbiter C holding a Paillier key they train one model without pooling data.
See the README for the protocol, the services and the threat model.
"""

from vfl.config import TrainingConfig
from vfl.data import PartyTable, from_dataframe, load_csv
from vfl.errors import VFLError
from vfl.simulate import simulate, simulate_csv

__version__ = "0.1.0"

__all__ = ["PartyTable", "TrainingConfig", "VFLError", "from_dataframe", "load_csv", "simulate", "simulate_csv"]
