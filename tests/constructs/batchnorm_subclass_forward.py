"""timm's BatchNormAct2d: a BatchNorm2d subclass whose forward is a copy of torch's own
(`F.batch_norm` with `training=bn_training`, momentum, `num_batches_tracked.add_(1)`)."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class BatchNormAct2d(nn.BatchNorm2d):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, track_running_stats=True):
        super().__init__(num_features, eps=eps, momentum=momentum, track_running_stats=track_running_stats)
        self.act = nn.ReLU()

    def forward(self, x):
        if self.momentum is None:
            exponential_average_factor = 0.0
        else:
            exponential_average_factor = self.momentum
        if self.training and self.track_running_stats:
            if self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
                if self.momentum is None:
                    exponential_average_factor = 1.0 / float(self.num_batches_tracked)
                else:
                    exponential_average_factor = self.momentum
        if self.training:
            bn_training = True
        else:
            bn_training = (self.running_mean is None) and (self.running_var is None)
        x = F.batch_norm(
            x,
            self.running_mean if not self.training or self.track_running_stats else None,
            self.running_var if not self.training or self.track_running_stats else None,
            self.weight,
            self.bias,
            bn_training,
            exponential_average_factor,
            self.eps,
        )
        return self.act(x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = BatchNormAct2d(4)
        self.free = BatchNormAct2d(4, track_running_stats=False)

    def forward(self, x):
        return self.free(self.bn(self.conv(x)))


def net():
    return Net()
