"""poco-rt: real-time, closed-loop neural forecasting for neuroscience rigs.

The import package joins the repository's top-level folders: `poco_rt.models` (training, needs
torch), `poco_rt.server` (serving, onnxruntime + numpy), `poco_rt.clients` (acquisition and
controller sides). This root holds only what all of them share and nothing that imports torch.
"""

__version__ = "0.1.0"
