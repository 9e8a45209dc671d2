from .blocks import ConvBNAct, make_stage
from .head import ClassifierHead
