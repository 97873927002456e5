package aws

// onDemandPrices is the catalog InstanceTypes offers: Linux on-demand prices
// in USD per hour in us-east-1, from AWS's on-demand pricing page
// (https://aws.amazon.com/ec2/pricing/on-demand/, "Linux", region "US East
// (N. Virginia)"). The same prices are used in every region: other regions
// cost up to about a third more, so a max_hourly_cost cap is checked against
// a lower bound there. Spot has no price here: spot prices move by the hour,
// so cost caps count spot and prefer_spot nodes at the on-demand price, which
// spot never exceeds with the default maximum price (the planner uses
// PricePerHour when SpotPrice is 0).
//
// A type is offered only if it is both here and in the region's
// DescribeInstanceTypes; CPUs, memory and GPUs come from EC2, not from here.
// Update the prices with the page when they change; add a type by adding a
// line.
var onDemandPrices = map[string]float64{
	// Burstable general purpose.
	"t3.medium": 0.0416,
	"t3.large":  0.0832,
	"t3.xlarge": 0.1664,

	// General purpose.
	"m5.large":    0.096,
	"m5.xlarge":   0.192,
	"m5.2xlarge":  0.384,
	"m5.4xlarge":  0.768,
	"m6i.large":   0.096,
	"m6i.xlarge":  0.192,
	"m6i.2xlarge": 0.384,
	"m6i.4xlarge": 0.768,
	"m7i.large":   0.1008,
	"m7i.xlarge":  0.2016,
	"m7i.2xlarge": 0.4032,
	"m7i.4xlarge": 0.8064,

	// Compute optimized.
	"c5.large":    0.085,
	"c5.xlarge":   0.17,
	"c5.2xlarge":  0.34,
	"c5.4xlarge":  0.68,
	"c6i.large":   0.085,
	"c6i.xlarge":  0.17,
	"c6i.2xlarge": 0.34,
	"c6i.4xlarge": 0.68,

	// Memory optimized.
	"r5.large":    0.126,
	"r5.xlarge":   0.252,
	"r5.2xlarge":  0.504,
	"r5.4xlarge":  1.008,
	"r6i.large":   0.126,
	"r6i.xlarge":  0.252,
	"r6i.2xlarge": 0.504,
	"r6i.4xlarge": 1.008,

	// GPU: NVIDIA T4 (g4dn), A10G (g5), V100 (p3).
	"g4dn.xlarge":   0.526,
	"g4dn.2xlarge":  0.752,
	"g4dn.4xlarge":  1.204,
	"g4dn.8xlarge":  2.176,
	"g4dn.12xlarge": 3.912,
	"g5.xlarge":     1.006,
	"g5.2xlarge":    1.212,
	"g5.4xlarge":    1.624,
	"g5.8xlarge":    2.448,
	"g5.12xlarge":   5.672,
	"p3.2xlarge":    3.06,
}
